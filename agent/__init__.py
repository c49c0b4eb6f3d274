"""Ballast: an automated risk keeper for on-chain derivative portfolios."""

__version__ = "0.1.0"
