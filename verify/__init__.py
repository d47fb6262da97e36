"""coralpi verify: checks and the Coral smoke test, run on the Pi itself."""

from __future__ import annotations

__version__ = "0.1.0"
