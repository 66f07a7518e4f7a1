"""Marquee: contracts and infrastructure shared by every service."""

__version__ = "0.1.0"
