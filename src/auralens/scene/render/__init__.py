"""auralens.scene.render"""
