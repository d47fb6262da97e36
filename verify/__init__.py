"""coralpi verify: checks and the Coral smoke test, run on the Pi itself."""

__version__ = "0.1.0"
