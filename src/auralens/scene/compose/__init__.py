"""auralens.scene.compose"""
