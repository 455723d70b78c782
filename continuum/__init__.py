"""Continuum: ML jobs placed across the cloud-edge continuum."""

__version__ = "0.1.0"
