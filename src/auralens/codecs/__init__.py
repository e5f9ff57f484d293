"""auralens.codecs"""
