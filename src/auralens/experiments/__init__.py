"""auralens.experiments"""
