"""Throwaway Debian hosts in network namespaces for coralpi's integration tests.

Not shipped with coralpi: used by ``tests/fleet`` and ``make demo``. See :class:`Fleet`.
"""

from .errors import FleetError
from .fleet import DEFAULT_HOSTS, Fleet
from .hosts import Host, HostSpec

__all__ = ["DEFAULT_HOSTS", "Fleet", "FleetError", "Host", "HostSpec"]
