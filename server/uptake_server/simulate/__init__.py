"""Synthetic adoption for demos, dashboards and alerts, sent through the SDK."""

from uptake_server.simulate.model import Scenario, SimulatedEvent, default_scenario, generate

__all__ = ["Scenario", "SimulatedEvent", "default_scenario", "generate"]
