"""Uptake SDK: send adoption events to the Uptake ingestion service."""

__version__ = "0.1.0"
