"""auralens.data"""
