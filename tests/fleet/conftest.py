"""Fixtures for integration tests on the test fleet (throwaway Debian hosts, root only).

Every test under tests/fleet is marked ``fleet``. The session-wide ``fleet`` has three hosts
(pi1, pi2: bookworm; pi3: trixie); ``make_fleet`` builds extra, private fleets that are torn
down at the end of the session. Tests that change a host's packages in ways other tests would
notice should use a private fleet.

SIGTERM (``timeout``, a CI time limit) ends the run like Ctrl-C (SIGINT) does, in this
process and in each xdist worker: KeyboardInterrupt is raised where the test is, so every
fixture and ``with`` block tears its fleet down (testfleet.interrupts), also when the signal
comes during a fleet's setup. A second signal does not cut that teardown short; if the
process is killed outright, each fleet's guardian tears it down (testfleet.guard).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from testfleet import DEFAULT_HOSTS, Fleet, HostSpec, interrupts

FLEET_DIR = Path(__file__).resolve().parent
_TIMINGS: list[tuple[str, dict[str, float]]] = []

MakeFleet = Callable[..., Fleet]


def pytest_configure(config: pytest.Config) -> None:
    interrupts.acquire()


def pytest_unconfigure(config: pytest.Config) -> None:
    interrupts.release()


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
        problems = _down_all(fleets)
    assert not problems, f"fleet teardown left things behind: {problems}"


def _down_all(fleets: list[Fleet]) -> list[str]:
    """Tear every fleet down, even if one teardown raises; then raise the first error."""
    problems: list[str] = []
    error: BaseException | None = None
    for fleet in reversed(fleets):
        try:
            problems += fleet.down()
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error
    return problems


@pytest.fixture(scope="session")
def fleet(make_fleet: MakeFleet) -> Fleet:
    """Three hosts: pi1 and pi2 (bookworm), pi3 (trixie), all amd64."""
    return make_fleet("fleet")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for name, timings in _TIMINGS:
        shown = ", ".join(f"{k} {v:.2f}s" for k, v in timings.items())
        terminalreporter.write_line(f"test fleet {name}: {shown}")
