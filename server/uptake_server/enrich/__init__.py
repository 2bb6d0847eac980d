"""Enrichers fill fields the sending tool did not know (such as the org unit) at ingest."""

from uptake_server.enrich.base import ENRICHER_GROUP, Enricher, EventFields, load_enrichers
from uptake_server.enrich.csv_org_units import CsvOrgUnits

__all__ = ["ENRICHER_GROUP", "CsvOrgUnits", "Enricher", "EventFields", "load_enrichers"]
