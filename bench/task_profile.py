"""Where a run's time goes: its tasks by time, from the run directory's event stream.

ansible-runner keeps every event of a run in ``RUN_DIR/artifacts/<playbook>/job_events``;
each task result carries its start, end and duration per host. This sums them per task
(over hosts) and says how many tasks ran on each host (each is at least one round trip),
like ansible.posix's profile_tasks but for a kept run, with no callback to enable.

    .venv/bin/python bench/task_profile.py RUN_DIR [--top 15]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

#: The events that end a task on a host (what ran, what was skipped).
_RESULTS = {
    "runner_on_ok": "ran",
    "runner_on_failed": "ran",
    "runner_on_unreachable": "ran",
    "runner_item_on_ok": "item",
    "runner_item_on_failed": "item",
    "runner_on_skipped": "skipped",
}


@dataclass
class TaskTime:
    name: str
    action: str
    seconds: float = 0.0
    hosts: set[str] = field(default_factory=set)


@dataclass
class Profile:
    playbook: str
    tasks: dict[str, TaskTime] = field(default_factory=dict)
    ran: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    skipped: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    @property
    def task_seconds(self) -> float:
        return sum(t.seconds for t in self.tasks.values())


def profile(events_dir: Path) -> Profile:
    """The tasks of one playbook run, from its ``job_events`` directory."""
    result = Profile(events_dir.parent.name)
    for path in sorted(events_dir.glob("*.json")):
        event = json.loads(path.read_text())
        kind = _RESULTS.get(str(event.get("event", "")))
        data = event.get("event_data") or {}
        host = str(data.get("host") or "")
        if kind is None or not host:
            continue
        if kind == "skipped":
            result.skipped[host] += 1
            continue
        if kind == "item":
            continue  # a loop's items: the loop's own result carries the whole time
        role = str(data.get("role") or "")
        task = str(data.get("task") or "")
        name = f"{role} : {task}" if role else task
        entry = result.tasks.setdefault(name, TaskTime(name, str(data.get("task_action", ""))))
        entry.seconds += float(data.get("duration") or 0.0)
        entry.hosts.add(host)
        result.ran[host] += 1
    return result


def profiles(run_dir: Path) -> list[Profile]:
    """Every playbook of a run directory (probe, apply's site, ...), in run order."""
    found = [p for p in (run_dir / "artifacts").glob("*/job_events") if p.is_dir()]
    found.sort(key=lambda p: min((f.stat().st_mtime for f in p.iterdir()), default=0.0))
    return [profile(p) for p in found]


def render(run_dir: Path, top: int) -> str:
    lines = []
    for prof in profiles(run_dir):
        hosts = sorted(set(prof.ran) | set(prof.skipped))
        ran = ", ".join(f"{h} {prof.ran[h]} ran / {prof.skipped[h]} skipped" for h in hosts)
        lines.append(
            f"{prof.playbook}: {prof.task_seconds:.1f} task-seconds over {len(hosts)} host(s); "
            f"tasks per host: {ran}"
        )
        ranked = sorted(prof.tasks.values(), key=lambda t: t.seconds, reverse=True)
        for task in ranked[:top]:
            lines.append(f"  {task.seconds:7.2f} s  {task.name}  [{task.action}]")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description="a kept run's tasks by time")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    if not (args.run_dir / "artifacts").is_dir():
        print(f"{args.run_dir}: not a coralpi run directory (no artifacts/)", file=sys.stderr)
        return 1
    print(render(args.run_dir, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
