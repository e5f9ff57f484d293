"""auralens.evaluate"""
