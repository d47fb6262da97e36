"""Fixtures for integration tests on the test fleet (throwaway Debian hosts, root only).

Every test under tests/fleet is marked ``fleet``. The session-wide ``fleet`` has three hosts
(pi1, pi2: bookworm; pi3: trixie); ``make_fleet`` builds extra, private fleets that are torn
down at the end of the session. Tests that change a host's packages in ways other tests would
notice should use a private fleet.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from testfleet import DEFAULT_HOSTS, Fleet, HostSpec

FLEET_DIR = Path(__file__).resolve().parent
_TIMINGS: list[tuple[str, dict[str, float]]] = []

MakeFleet = Callable[..., Fleet]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if FLEET_DIR in Path(item.path).resolve().parents:
            item.add_marker(pytest.mark.fleet)


def _unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "test fleet needs root (network namespaces, mounts, chroot)"
    if shutil.which("ip") is None:
        return "test fleet needs `ip` (iproute2) for network namespaces"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return f"`ip netns` is unavailable here: {probe.stderr.strip()}"
    return None


def _require_fleet_support() -> None:
    reason = _unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def fleet_support() -> None:
    """Skips (with the reason) where fleets cannot run: not root, or no `ip netns`."""
    _require_fleet_support()


@pytest.fixture(scope="session")
def make_fleet(
    fleet_support: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MakeFleet]:
    """Factory: make_fleet(name, hosts=[HostSpec(...)], host_vars=..., group_vars=...)."""
    # SIGTERM (a CI job being cancelled) ends the run like Ctrl-C, so fleets are torn down.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    fleets: list[Fleet] = []

    def make(
        name: str = "fleet",
        hosts: Sequence[HostSpec] = DEFAULT_HOSTS,
        host_vars: Mapping[str, Mapping[str, Any]] | None = None,
        group_vars: Mapping[str, Any] | None = None,
    ) -> Fleet:
        fleet = Fleet(
            tmp_path_factory.mktemp(name), hosts, host_vars=host_vars, group_vars=group_vars
        )
        fleets.append(fleet)
        fleet.up()
        _TIMINGS.append((name, fleet.timings))
        return fleet

    try:
        yield make
    finally:
        signal.signal(signal.SIGTERM, previous)
    problems = [p for fleet in reversed(fleets) for p in fleet.down()]
    assert not problems, f"fleet teardown left things behind: {problems}"


@pytest.fixture(scope="session")
def fleet(make_fleet: MakeFleet) -> Fleet:
    """Three hosts: pi1 and pi2 (bookworm), pi3 (trixie), all amd64."""
    return make_fleet("fleet")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, timings in _TIMINGS:
        shown = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        terminalreporter.write_line(f"test fleet {name}: {shown}")
