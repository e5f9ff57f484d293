"""auralens.scene.separate"""
