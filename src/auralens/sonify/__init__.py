"""auralens.sonify"""
