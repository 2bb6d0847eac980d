"""Uptake ingestion service and adoption-KPI exporter."""

__version__ = "0.1.0"
