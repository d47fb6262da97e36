"""The one exception type the test fleet raises."""


class FleetError(RuntimeError):
    """Bringing up, using or tearing down a test fleet failed."""
