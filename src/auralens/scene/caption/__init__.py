"""auralens.scene.caption"""
