"""auralens.scene"""
