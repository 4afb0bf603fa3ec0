"""repro: reproduces experiments of five documents on score-based and diffusion image models."""

__version__ = "0.1.0"
