"""Forms: a fifth tool the dashboards test sends itself, with a fixed pattern of people.

In each of three org units, K people active an hour ago, K more three days ago and
K more twenty days ago, so every figure of the tool clears the minimum group size
at any hour of the week. The simulated tools have some figures withheld at times
(privacy: a 28-day count is withheld while only 1 to K-1 people were active in 28
days but not in 7), so which of them shows a given figure depends on the hour.
"""

from __future__ import annotations

import datetime as dt
import itertools
import threading
from dataclasses import dataclass
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, start_http_server

import uptake
from uptake_server.simulate import Scenario
from uptake_server.simulate.model import registry_document

K = 5
FORMS = {
    "name": "Forms",
    "licensed_seats": 60,
    "adoption_target": 0.5,
    "core_actions": [],
    "features": ["templates", "signatures"],
}
FORMS_UNITS = ("sales", "engineering", "support")
FORMS_AGO = (dt.timedelta(hours=1), dt.timedelta(days=3), dt.timedelta(days=20))


@dataclass(frozen=True)
class Person:
    """One user of the Forms tool."""

    user_id: str
    org_unit: str
    ago: dt.timedelta


def forms_people() -> list[Person]:
    """Return the Forms users, K per org unit and period."""
    return [
        Person(f"forms-{unit}-{group}-{i}", unit, ago)
        for unit in FORMS_UNITS
        for group, ago in enumerate(FORMS_AGO)
        for i in range(K)
    ]


def track_forms(client: uptake.Client, person: Person, *, at: dt.datetime | None) -> None:
    """Track what one Forms user does: fill a form from a template, sign it."""
    for action, feature in (("fill", "templates"), ("sign", "signatures")):
        client.track(
            person.user_id,
            action,
            tool="forms",
            org_unit=person.org_unit,
            feature=feature,
            timestamp=at,
        )


def write_registry(path: Path, scenario: Scenario, now: dt.datetime) -> None:
    """Write the tool registry: the simulated tools and Forms."""
    document = registry_document(scenario, now=now)
    tools = document["tools"]
    assert isinstance(tools, dict)
    tools["forms"] = {**FORMS, "go_live": (now - dt.timedelta(days=30)).date().isoformat()}
    path.write_text(yaml.safe_dump(document))


class ToolHost:
    """Forms, embedding the SDK: live events for the service, the SDK's metrics for Prometheus."""

    def __init__(self, target: str, *, port: int) -> None:
        self.client = uptake.Client(target, flush_interval=0.2)
        registry = CollectorRegistry()
        registry.register(uptake.MetricsCollector(self.client))
        self._http, _ = start_http_server(port, "127.0.0.1", registry=registry)
        self._stop = threading.Event()
        self._sender = threading.Thread(target=self._send, name="forms", daemon=True)
        self._sender.start()

    def _send(self) -> None:
        today = [person for person in forms_people() if person.ago == FORMS_AGO[0]]
        for count, person in enumerate(itertools.cycle(today)):
            if self._stop.wait(0.1):
                return
            track_forms(self.client, person, at=None)
            if count % 12 == 0:
                # A device whose clock runs an hour ahead: the service rejects its events.
                ahead = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
                self.client.track(person.user_id, "fill", tool="forms", timestamp=ahead)

    def stop(self) -> None:
        """Stop sending, close the client and the metrics endpoint."""
        self._stop.set()
        self._sender.join(10)
        self.client.close(timeout=10)
        self._http.shutdown()
        self._http.server_close()
