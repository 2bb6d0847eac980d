"""A prometheus_client collector of the SDK's own counts (uptake_sdk_events_total).

prometheus_client is imported only when metrics are collected: the SDK itself
depends on grpcio and protobuf only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from uptake._stats import OUTCOMES

if TYPE_CHECKING:
    from uptake._client import Client


class MetricsCollector:
    """Expose a client's event counts by outcome to a prometheus_client registry.

    Register it with `prometheus_client.REGISTRY.register(MetricsCollector(client))`.
    """

    def __init__(self, client: Client) -> None:
        self._client = client

    def describe(self) -> Iterator[Any]:
        """Describe the metric without reading the counts."""
        yield self._family()

    def collect(self) -> Iterator[Any]:
        """Yield uptake_sdk_events_total{outcome} from the client's stats."""
        stats = self._client.stats()
        family = self._family()
        for outcome in OUTCOMES:
            family.add_metric([outcome], getattr(stats, outcome))
        yield family

    @staticmethod
    def _family() -> Any:
        from prometheus_client.core import CounterMetricFamily

        return CounterMetricFamily(
            "uptake_sdk_events",
            "Events tracked by the Uptake SDK, by final outcome (delivered or a drop reason)",
            labels=["outcome"],
        )
