"""Benchmark: fleet converge time against host count, and the second run.

For each host count N (default 1, 3, 6) this brings up a fresh test fleet of N bookworm
hosts (throwaway Debian hosts in network namespaces; STAND-IN Coral runtime served locally),
then times `coralpi apply` twice: the first converge and the second (idempotent) run.
The apt proxy's cache and the artifact cache are shared between sizes, so after the first
size the Debian packages come from the proxy: the figures are for a warm apt proxy, as a
fleet behind apt-cacher-ng sees them. Needs root.

Besides wall time it gives the controller's own CPU seconds per run (the coralpi process
and everything it waited for: ansible-playbook, its workers, ssh; the test hosts' sshd and
modules run outside that tree, as a real Pi's would), per host, and the tasks that ran per
host on the second run (each is at least one round trip). ``--variant NAME:VAR=VALUE,...``
adds no-op runs with other environment settings on the same converged fleet, alternating
with the default, ``--noop-runs`` times each, to compare a lever on one loaded machine.

    .venv/bin/python bench/converge.py [--hosts 1 3 6] [--noop-runs 2]
        [--variant mitogen:ANSIBLE_STRATEGY=mitogen_linear,ANSIBLE_STRATEGY_PLUGINS=DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import task_profile  # noqa: E402

from testfleet import Fleet, HostSpec  # noqa: E402

CORALPI = str(Path(sys.executable).parent / "coralpi")


@dataclass
class Timed:
    seconds: float
    cpu: float  # the controller's CPU seconds (user + system of the process tree)
    report: dict[str, Any]

    @property
    def run_dir(self) -> Path:
        return Path(str(self.report["run_dir"]))


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _apply(fleet: Fleet, runs: Path, lock: Path, env: dict[str, str] | None = None) -> Timed:
    cpu_before = _children_cpu()
    started = time.monotonic()
    proc = subprocess.run(
        [
            CORALPI,
            "apply",
            "-i",
            str(fleet.inventory_path),
            "--json",
            "--runs-dir",
            str(runs),
            "--lock",
            str(lock),
        ],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        env={**os.environ, **(env or {})},
    )
    seconds = time.monotonic() - started
    cpu = _children_cpu() - cpu_before
    if proc.returncode != 0:
        raise SystemExit(f"coralpi apply failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return Timed(seconds, cpu, json.loads(proc.stdout))


def _tasks_per_host(run: Timed) -> float:
    """Tasks that ran (not skipped) per host on the run's provision and verify playbooks."""
    counts = [
        sum(prof.ran.values()) / max(1, len(prof.ran))
        for prof in task_profile.profiles(run.run_dir)
        if prof.playbook != "probe"
    ]
    return round(sum(counts), 1)


def _variant(text: str) -> tuple[str, dict[str, str]]:
    name, _, pairs = text.partition(":")
    env = dict(pair.split("=", 1) for pair in pairs.split(",") if pair)
    if not name or not env:
        raise SystemExit(f"--variant {text!r}: give NAME:VAR=VALUE[,VAR=VALUE...]")
    return name, env


def _lock(fleet: Fleet, lock: Path) -> None:
    assert fleet.standin is not None
    pins = fleet.pin_args()
    subprocess.run(
        [CORALPI, "lock", "-i", str(fleet.inventory_path), "--lock", str(lock), *pins],
        check=True,
        capture_output=True,
        cwd=REPO,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description="fleet converge time against host count")
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 3, 6])
    parser.add_argument("--noop-runs", type=int, default=1, help="no-op runs per variant")
    parser.add_argument("--variant", action="append", default=[], type=_variant)
    parser.add_argument("--profile", action="store_true", help="print the second run's tasks")
    args = parser.parse_args()
    results: list[dict[str, Any]] = []
    variants: list[tuple[str, dict[str, str]]] = [("default", {}), *args.variant]
    for count in args.hosts:
        with tempfile.TemporaryDirectory(prefix=f"coralpi-bench-{count}-") as tmp:
            work = Path(tmp)
            specs = [HostSpec(f"pi{i + 1}", "bookworm") for i in range(count)]
            with Fleet(work / "fleet", specs) as fleet:
                lock = work / "coralpi.lock"
                _lock(fleet, lock)
                first = _apply(fleet, work / "runs", lock)
                noop: dict[str, list[Timed]] = {name: [] for name, _ in variants}
                for _ in range(args.noop_runs):
                    for name, env in variants:  # alternating: the machine's load hits all
                        noop[name].append(_apply(fleet, work / "runs", lock, env))
            second = noop["default"][0]
            if args.profile:
                print(task_profile.render(second.run_dir, 12), flush=True)
            row: dict[str, Any] = {
                "hosts": count,
                "first_s": round(first.seconds, 1),
                "first_cpu_s_per_host": round(first.cpu / count, 1),
                "changed_on_second_run": sum(
                    int(h.get("changed") or 0) for h in second.report["hosts"]
                ),
                "tasks_per_host_second_run": _tasks_per_host(second),
            }
            for name, runs in noop.items():
                key = "second" if name == "default" else name
                row[f"{key}_s"] = round(statistics.median(r.seconds for r in runs), 1)
                row[f"{key}_cpu_s_per_host"] = round(
                    statistics.median(r.cpu for r in runs) / count, 1
                )
            results.append(row)
            print(json.dumps(row), flush=True)
    base = results[0]
    for row in results:
        print(
            f"{row['hosts']} host(s): first converge {row['first_s']} s "
            f"({row['first_s'] / base['first_s']:.2f}x the {base['hosts']}-host time), "
            f"second run {row['second_s']} s ({row['second_s'] / row['first_s']:.0%} of the "
            f"first; goal <= 25%), {row['second_s'] / base['second_s']:.2f}x the "
            f"{base['hosts']}-host second run (goals: 3 hosts <= 1.5x, 6 <= 2x); controller "
            f"CPU per host {row['first_cpu_s_per_host']} s first, "
            f"{row['second_cpu_s_per_host']} s second; {row['tasks_per_host_second_run']} "
            f"tasks per host on the second run; changed then: {row['changed_on_second_run']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
