"""`coralpi status`'s rows from last-pull.json (the role coralpi_pull's last result)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from provision.fleet.pull_status import host_row

NOW = dt.datetime(2026, 12, 2, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)
VERIFY = {
    "facts": {"os_id": "debian", "os_codename": "bookworm", "arch": "aarch64", "board": None},
    "checks": [{"name": "usb_accelerator", "status": "warn", "detail": "no accelerator"}],
    "smoke": {"device": "cpu", "top": [{"label": "Ara macao", "score": 0.9}]},
}


def _last(**kw: Any) -> dict[str, Any]:
    base = {
        "status": "unchanged",
        "finished_at": "2026-12-02T11:00:00Z",
        "commit": "0123456789abcdef",
        "changed": None,
        "verify": VERIFY,
        "last_ok": {"commit": "0123456789abcdef"},
        "message": "",
    }
    return {**base, **kw}


def test_a_fresh_pull_is_ok_with_its_verify_report() -> None:
    row = host_row("pi1", _last(), NOW, DAY)
    assert row.status == "ok" and row.os == "debian bookworm" and row.arch == "aarch64"
    assert row.smoke.startswith("Ara macao") and row.smoke_device == "cpu"
    assert row.warnings == ["usb_accelerator: no accelerator"]
    assert "commit 0123456789ab" in row.message


def test_failed_stale_and_never_pulled_pis_are_named_with_why() -> None:
    failed = host_row("pi2", _last(status="failed", message="fatal: mirror down"), NOW, DAY)
    assert failed.status == "failed" and failed.failed_task == "pull"
    assert "mirror down" in failed.message and "last good commit 0123456789ab" in failed.message
    stale = host_row("pi3", _last(finished_at="2026-11-30T11:00:00Z"), NOW, DAY)
    assert stale.status == "stale" and "2026-11-30T11:00:00Z" in stale.message
    never = host_row("pi4", {"never_pulled": True}, NOW, DAY)
    assert never.status == "failed" and never.failed_task == "never pulled"
    unread = host_row("pi5", None, NOW, DAY)
    assert unread.status == "unreachable"
