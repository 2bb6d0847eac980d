"""The SDK's version and the client name it sends with every event."""

__version__ = "0.1.0"
CLIENT_NAME = f"uptake-python/{__version__}"
