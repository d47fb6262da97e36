"""Pull mode for real: systemd-booted Pis converge themselves with ansible-pull from a git
repository and an HTTP artifact mirror on the test bridge, with no controller connected.

The controller's part ends before any Pi is touched: `coralpi lock`, then `coralpi pull
init` writes and commits the repository and exports the mirror. Each Pi then gets only
`bootstrap.sh` (as a first-boot hook would put it on the card) and runs it: Debian's
packages through the apt proxy, ansible-core into a venv from the mirror's wheel (sha256
checked), the first pull (provision + verify), which installs coralpi-pull.timer. After that
the timer fires by itself.

STAND-INS: the Coral packages and community .debs are the fleet's stand-ins (see
test_apply_fleet.py); the Pis are containers, not Pis (no board: no camera step).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from booted_pis import BootedPi, Server, booted_pis, git_daemon, http_dir, systemd_tree
from fleet_cli import CORALPI, PARROT, REPO, lock_fleet

from testfleet import Fleet, HostSpec

pytestmark = pytest.mark.pull

NAMES = ["pi1", "pi2"]
GIT_PORT = 9418
MIRROR_PORT = 8081
RESULT = "/var/lib/coralpi/last-pull.json"
STATE = "/var/lib/coralpi/pull"
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def pull_fleet(make_fleet: Any) -> Fleet:
    """Two sshd hosts whose network namespaces (and addresses) the booted Pis take."""
    fleet: Fleet = make_fleet("pull", hosts=[HostSpec(n, "bookworm") for n in NAMES])
    return fleet


@pytest.fixture(scope="module")
def world(pull_fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The controller's work (lock, pull repository, mirror export), the servers on the
    bridge, and the booted Pis with bootstrap.sh run on each."""
    work = tmp_path_factory.mktemp("pull")
    address = pull_fleet.bridge_address
    start = time.monotonic()
    tree = systemd_tree()
    TIMINGS["systemd tree"] = time.monotonic() - start
    lock = lock_fleet(pull_fleet, pull_fleet.inventory_path, work / "coralpi.lock")
    repos = work / "git"
    repo = repos / "pull"
    mirror = work / "mirror"
    start = time.monotonic()
    proc = subprocess.run(
        [
            CORALPI,
            "pull",
            "init",
            str(repo),
            "-i",
            str(pull_fleet.inventory_path),
            "--platform",
            "bookworm/x86_64/3.11",
            "--board",
            "",
            "--repo-url",
            f"git://{address}:{GIT_PORT}/pull",
            "--mirror-url",
            f"http://{address}:{MIRROR_PORT}",
            "--export",
            str(mirror),
            "--lock",
            str(lock),
            # A fast schedule, so the test sees the timer fire by itself.
            "-e",
            "coralpi_pull_boot_delay=1s",
            "-e",
            "coralpi_pull_interval=30s",
            "-e",
            "coralpi_pull_random_delay=3s",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    TIMINGS["pull init (controller)"] = time.monotonic() - start
    made = json.loads(proc.stdout)
    assert made["hosts"] == NAMES and made["changed"] is True, made
    with (
        git_daemon(repos, address, GIT_PORT, work / "git-daemon.log") as git,
        http_dir(mirror, address, MIRROR_PORT, work / "mirror.log") as web,
        booted_pis(pull_fleet, NAMES, tree, work / "pis") as pis,
    ):
        bootstrap = (repo / "bootstrap.sh").read_bytes()

        def first(pi: BootedPi) -> tuple[subprocess.CompletedProcess[str], float]:
            t0 = time.monotonic()
            pi.run("cat > /root/bootstrap.sh", stdin=bootstrap)
            done = pi.run(f"sh /root/bootstrap.sh {pi.name}", timeout=1500)
            return done, time.monotonic() - t0

        start = time.monotonic()
        with ThreadPoolExecutor(len(pis)) as pool:
            firsts = dict(zip(NAMES, pool.map(first, pis), strict=True))
        TIMINGS["bootstrap + first pull, 2 Pis in parallel"] = time.monotonic() - start
        for name, (done, seconds) in firsts.items():
            TIMINGS[f"bootstrap + first pull {name}"] = seconds
            steps = re.findall(r"^coralpi-bootstrap: (\w+) at (\d+)$", done.stdout, re.M)
            if steps:
                ends = [int(t) for _, t in steps[1:]]
                ends.append(int(steps[0][1]) + int(seconds))
                for (step, at), end in zip(steps, ends, strict=True):
                    TIMINGS[f"{name} {step}"] = end - int(at)
        yield {
            "pis": {p.name: p for p in pis},
            "firsts": firsts,
            "repo": repo,
            "mirror": mirror,
            "git": git,
            "web": web,
            "commit": made["commit"],
        }
    print("pull fleet timings: " + ", ".join(f"{k} {v:.0f}s" for k, v in TIMINGS.items()))


def result(pi: BootedPi) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(pi.text(f"cat {RESULT}"))
    return data


def pull_now(pi: BootedPi, *, full: bool = False) -> subprocess.CompletedProcess[str]:
    """One pull now, by the runner the Pi's coralpi-pull.service starts (under its lock: a
    run the timer started first is waited for)."""
    flag = " --full" if full else ""
    return pi.run(
        f"/usr/local/lib/coralpi/coralpi-pull-run{flag} /etc/coralpi/pull.json", timeout=900
    )


def summary(done: subprocess.CompletedProcess[str]) -> tuple[str, str, int | None]:
    """(status, commit prefix, changed) from the runner's last line."""
    last = done.stdout.strip().splitlines()[-1]
    match = re.match(r"coralpi-pull: (\w+) \(commit (\w+), changed (\w+)\)", last)
    assert match, last
    return match[1], match[2], int(match[3]) if match[3].isdigit() else None


def test_each_pi_converges_and_verifies_with_no_controller(world: dict[str, Any]) -> None:
    for name, (done, _seconds) in world["firsts"].items():
        pi = world["pis"][name]
        assert done.returncode == 0, (name, done.stdout[-4000:], done.stderr[-2000:])
        # The bootstrap's own run (its last line); the result file may already hold the
        # timer's next run, which keeps the verify report of the run that converged.
        status, commit, changed = summary(done)
        assert status == "ok" and world["commit"].startswith(commit), done.stdout[-2000:]
        assert changed is not None and changed > 0
        got = result(pi)
        assert got["status"] in ("ok", "unchanged"), got
        assert got["commit"] == world["commit"] == got["last_ok"]["commit"], got
        assert got["verify_result"] in ("pass", "warn"), got["verify"]
        assert got["verify"]["smoke"]["top"][0]["label"] == PARROT
        # Installed from the mirror's files: the venv's runtime, the local fact.
        assert pi.text("/opt/coralpi/venv/bin/python -c 'import tflite_runtime; print(1)'")
        fact = json.loads(pi.text("cat /etc/ansible/facts.d/coralpi.fact"))
        assert fact["runtime_package"] == "libedgetpu1-std"
        assert pi.text("systemctl is-enabled coralpi-pull.timer").strip() == "enabled"
        assert pi.text("systemctl is-active coralpi-pull.timer").strip() == "active"


def quiet(pi: BootedPi) -> None:
    """No run by the timer from now on, and none under way."""
    pi.text("systemctl stop coralpi-pull.timer")
    deadline = time.monotonic() + 600
    while pi.run("systemctl is-active coralpi-pull.service").stdout.strip() in (
        "active",
        "activating",
    ):
        assert time.monotonic() < deadline, pi.name
        time.sleep(1)


def test_the_timer_pulls_by_itself_and_nothing_new_changes_nothing(
    world: dict[str, Any],
) -> None:
    """The timer's own run (1 s after boot is long past, up to 3 s random delay) finds the
    repository unchanged and stops before the playbook; a full run asked for then reports
    changed=0."""
    pi1: BootedPi = world["pis"]["pi1"]
    deadline = time.monotonic() + 120
    while True:
        got = result(pi1)
        if got["status"] == "unchanged":
            break
        assert time.monotonic() < deadline, got
        time.sleep(2)
    assert got["full_run"] is False and got["changed"] is None, got
    assert got["commit"] == world["commit"]
    journal = pi1.text("journalctl -u coralpi-pull.service --no-pager -o cat")
    assert "coralpi-pull: unchanged" in journal, journal[-2000:]

    start = time.monotonic()
    done = pull_now(pi1, full=True)
    TIMINGS["second full pull pi1"] = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:]
    assert summary(done) == ("ok", world["commit"][:12], 0), pi1.text(
        f"grep -B3 'changed:' {STATE}/last-pull.log || true"
    )


def entry_of(world: dict[str, Any]) -> str:
    """The dest of the asset the tamper test took from pi2."""
    plan = json.loads((world["repo"] / "hosts" / "pi2.json").read_text())
    files = plan["coralpi_plans"]["localhost"]["mirror_files"]
    return str(next(f for f in files if f["kind"] == "asset")["dest"])


def _fact_and_venv(pi: BootedPi) -> str:
    return pi.text(
        "md5sum /etc/ansible/facts.d/coralpi.fact; ls -l --time-style=+%s /opt/coralpi/venv/bin"
    )


def test_a_tampered_artifact_on_the_mirror_is_refused_on_the_pi(world: dict[str, Any]) -> None:
    pi2: BootedPi = world["pis"]["pi2"]
    for pi in world["pis"].values():  # no run by the timer between the steps below
        quiet(pi)
    plan = json.loads((world["repo"] / "hosts" / "pi2.json").read_text())
    entry = next(
        f for f in plan["coralpi_plans"]["localhost"]["mirror_files"] if f["kind"] == "asset"
    )
    served = world["mirror"] / entry["path"]
    original = served.read_bytes()
    before = _fact_and_venv(pi2)
    pi2.text(f"rm /var/cache/coralpi/mirror/{entry['dest']}")
    served.unlink()  # a new file: the export is a copy, but never write through a path
    served.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    try:
        done = pull_now(pi2, full=True)
    finally:
        served.unlink()
        served.write_bytes(original)
    assert done.returncode != 0
    got = result(pi2)
    assert got["status"] == "failed", got
    assert "coralpi_mirror: refused" in got["message"], got
    assert "checksum" in got["message"] and entry["dest"] in got["message"], got
    assert got["last_ok"]["commit"] == world["commit"]
    assert pi2.run(f"test -e /var/cache/coralpi/mirror/{entry['dest']}").returncode != 0
    assert _fact_and_venv(pi2) == before


def test_an_unreachable_mirror_or_repository_leaves_the_pi_as_it_was(
    world: dict[str, Any],
) -> None:
    pi1: BootedPi = world["pis"]["pi1"]
    pi2: BootedPi = world["pis"]["pi2"]
    web: Server = world["web"]
    git: Server = world["git"]
    # pi2 still lacks the asset the previous test refused; the mirror is gone now.
    web.stop()
    before = _fact_and_venv(pi2)
    done = pull_now(pi2, full=True)
    assert done.returncode != 0
    got = result(pi2)
    assert got["status"] == "failed", got
    assert f"{entry_of(world)} from http://" in got["message"], got
    assert f":{MIRROR_PORT}/" in got["message"] and "refused" in got["message"], got
    assert _fact_and_venv(pi2) == before
    # The repository is gone too: pi1's pull fails at the fetch, its last good commit kept.
    git.stop()
    before = _fact_and_venv(pi1)
    done = pull_now(pi1)
    assert done.returncode != 0
    got = result(pi1)
    assert got["status"] == "failed" and got["changed"] is None, got
    assert got["message"], got
    assert got["last_ok"]["commit"] == world["commit"]
    assert _fact_and_venv(pi1) == before


def test_status_gathers_last_results_over_ssh_into_the_fleet_report(
    pull_fleet: Fleet, world: dict[str, Any], tmp_path: Path
) -> None:
    """`coralpi status` over SSH on the fleet's sshd hosts (the booted Pis share their
    addresses but run no sshd of their own): pi1's sshd host is given the last result the
    booted pi1 wrote, pi2's none (never pulled)."""
    last = world["pis"]["pi1"].text(f"cat {RESULT}")
    pull_fleet.ssh("pi1", f"mkdir -p /var/lib/coralpi && cat > {RESULT}", become=True, input=last)
    proc = subprocess.run(
        [
            CORALPI,
            "status",
            "-i",
            str(pull_fleet.inventory_path),
            "--stale-after",
            "1",
            "--runs-dir",
            str(tmp_path),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert proc.returncode == 2, proc.stderr
    rows = {r["host"]: r for r in json.loads(proc.stdout)["hosts"]}
    assert rows["pi2"]["status"] == "failed" and rows["pi2"]["failed_task"] == "never pulled"
    # pi1's last pull is the one the previous test made fail (repository gone); the report
    # names its last good commit and keeps the verify report of the run that converged it.
    assert rows["pi1"]["status"] == "failed", rows["pi1"]
    assert f"last good commit {world['commit'][:12]}" in rows["pi1"]["message"]
    assert rows["pi1"]["os"] == "debian bookworm" and rows["pi1"]["smoke"].startswith(PARROT)
