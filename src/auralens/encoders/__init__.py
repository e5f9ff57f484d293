"""auralens.encoders"""
