"""auralens: listen to what audio models perceive, and turn sound scenes into images."""

__version__ = "0.1.0"

__all__ = ["__version__"]
