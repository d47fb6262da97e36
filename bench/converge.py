"""Benchmark: fleet converge time against host count, and the second run.

For each host count N (default 1, 3, 6) this brings up a fresh test fleet of N bookworm
hosts (throwaway Debian hosts in network namespaces; STAND-IN Coral runtime served locally),
then times `coralpi apply` twice: the first converge and the second (idempotent) run.
The apt proxy's cache and the artifact cache are shared between sizes, so after the first
size the Debian packages come from the proxy: the figures are for a warm apt proxy, as a
fleet behind apt-cacher-ng sees them. Needs root.

    .venv/bin/python bench/converge.py [--hosts 1 3 6]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testfleet import Fleet, HostSpec  # noqa: E402

CORALPI = str(Path(sys.executable).parent / "coralpi")


def _apply(fleet: Fleet, runs: Path, lock: Path) -> tuple[float, dict[str, Any]]:
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
    )
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise SystemExit(f"coralpi apply failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, json.loads(proc.stdout)


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
    args = parser.parse_args()
    results = []
    for count in args.hosts:
        with tempfile.TemporaryDirectory(prefix=f"coralpi-bench-{count}-") as tmp:
            work = Path(tmp)
            specs = [HostSpec(f"pi{i + 1}", "bookworm") for i in range(count)]
            with Fleet(work / "fleet", specs) as fleet:
                lock = work / "coralpi.lock"
                _lock(fleet, lock)
                first, _ = _apply(fleet, work / "runs", lock)
                second, again = _apply(fleet, work / "runs", lock)
            changed_again = sum(int(h.get("changed") or 0) for h in again["hosts"])
            row = {
                "hosts": count,
                "first_s": round(first, 1),
                "second_s": round(second, 1),
                "changed_on_second_run": changed_again,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
    base = results[0]["first_s"]
    for row in results:
        per_host = float(row["first_s"]) / float(base) if base else 0.0
        print(
            f"{row['hosts']} host(s): first converge {row['first_s']} s "
            f"({per_host:.2f}x the {results[0]['hosts']}-host time), "
            f"second run {row['second_s']} s, changed on second run: "
            f"{row['changed_on_second_run']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
