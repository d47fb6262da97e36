"""Folding ansible-runner events into per-host progress (recorded event shapes)."""

from __future__ import annotations

from typing import Any

from provision.driver.runner import EventTracker, HostProgress, mark_interrupted


def _event(name: str, host: str, task: str = "t", role: str = "", **data: Any) -> dict[str, Any]:
    return {"event": name, "event_data": {"host": host, "task": task, "role": role, **data}}


def test_counts_and_failures_per_host() -> None:
    seen: list[tuple[str, str]] = []

    def on_change(progress: HostProgress, what: str) -> None:
        seen.append((progress.name, what))

    tracker = EventTracker(on_change=on_change)
    events = [
        {"event": "playbook_on_start", "event_data": {}},
        _event("runner_on_start", "pi1", "Install runtime", "coralpi_edgetpu"),
        _event("runner_on_ok", "pi1", "Install runtime", "coralpi_edgetpu", res={"changed": True}),
        _event("runner_on_ok", "pi2", "Install runtime", "coralpi_edgetpu", res={"changed": False}),
        _event("runner_on_skipped", "pi2", "Camera"),
        _event(
            "runner_on_failed",
            "pi2",
            "Update apt",
            "coralpi_apt",
            res={"msg": "Coral repository unreachable\nmore"},
        ),
        _event("runner_on_failed", "pi1", "optional", ignore_errors=True, res={"msg": "x"}),
        _event("runner_on_unreachable", "pi3", "Gathering Facts", res={"msg": "ssh: timed out"}),
    ]
    for event in events:
        assert tracker.handle(event) is True
    pi1, pi2, pi3 = (tracker.hosts[n] for n in ("pi1", "pi2", "pi3"))
    assert (pi1.ok, pi1.changed, pi1.failed, pi1.status) == (2, 1, 0, "ok")
    assert (pi2.ok, pi2.skipped, pi2.failed, pi2.status) == (1, 1, 1, "failed")
    assert pi2.failed_task == "coralpi_apt : Update apt"
    assert pi2.message == "Coral repository unreachable"
    assert pi3.status == "unreachable" and pi3.message == "ssh: timed out"
    assert ("pi1", "start") in seen and ("pi3", "unreachable") in seen
    assert ("pi1", "changed") in seen and ("pi2", "ok") in seen


def test_stderr_last_line_is_the_message_when_no_msg() -> None:
    tracker = EventTracker()
    tracker.handle(
        _event("runner_on_failed", "pi1", res={"stderr": "W: a\nE: Unable to locate package"})
    )
    assert tracker.hosts["pi1"].message == "E: Unable to locate package"


def test_messages_and_task_names_lose_url_passwords() -> None:
    tracker = EventTracker()
    tracker.handle(
        _event(
            "runner_on_failed",
            "pi1",
            "Use proxy http://ops:Canary-7x@10.0.0.1:3142",
            "coralpi_apt",
            res={"msg": "cannot reach http://ops:Canary-7x@10.0.0.1:3142"},
        )
    )
    pi1 = tracker.hosts["pi1"]
    assert "Canary-7x" not in pi1.message + pi1.failed_task
    assert pi1.message == "cannot reach http://ops:***@10.0.0.1:3142"


def test_interrupted_host_names_the_task_it_was_on() -> None:
    tracker = EventTracker()
    tracker.handle(
        _event("runner_on_start", "pi1", "Install the Debian packages", "coralpi_python")
    )
    tracker.handle(_event("runner_on_failed", "pi2", "Update apt", "coralpi_apt", res={"msg": "x"}))
    for progress in tracker.hosts.values():
        if progress.status == "ok":
            mark_interrupted(progress)
    assert tracker.hosts["pi1"].status == "interrupted"
    assert tracker.hosts["pi1"].failed_task == "coralpi_python : Install the Debian packages"
    assert tracker.hosts["pi2"].status == "failed"


def test_a_failed_command_is_explained_by_its_stderr_not_by_ansibles_generic_msg() -> None:
    tracker = EventTracker()
    stderr = (
        "dpkg: error: dpkg frontend lock was locked by another process with pid 608\n"
        "Note: removing the lock file is always wrong, can damage the locked area"
    )
    tracker.handle(
        _event("runner_on_failed", "pi1", res={"msg": "non-zero return code", "stderr": stderr})
    )
    tracker.handle(
        _event("runner_on_failed", "pi2", res={"msg": "non-zero return code", "stderr": "a\nb"})
    )
    assert tracker.hosts["pi1"].message == stderr.splitlines()[0]
    assert tracker.hosts["pi2"].message == "b"
