"""Uptake SDK: send adoption events to the Uptake ingestion service.

import uptake

with uptake.Client("127.0.0.1:50051") as client:
    client.track("user-42", "page_edit", tool="wiki", org_unit="sales")
"""

from uptake._client import Client
from uptake._default import flush, init, track
from uptake._errors import ConfigurationError, TransportError, UptakeError
from uptake._memory import InMemoryTransport, RecordedEvent
from uptake._metrics import MetricsCollector
from uptake._options import Options
from uptake._stats import OUTCOMES, Failure, Stats
from uptake._transport import Transport
from uptake._version import __version__

__all__ = [
    "OUTCOMES",
    "Client",
    "ConfigurationError",
    "Failure",
    "InMemoryTransport",
    "MetricsCollector",
    "Options",
    "RecordedEvent",
    "Stats",
    "Transport",
    "TransportError",
    "UptakeError",
    "__version__",
    "flush",
    "init",
    "track",
]
