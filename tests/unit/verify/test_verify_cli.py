"""`python -m verify` end to end on recorded root trees (the smoke test is covered by
tests/local/test_smoke_cpu.py)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from verify_fakeroot import REPO, FakeRoot, standard_fact

from verify import report

PI4 = "Raspberry Pi 4 Model B Rev 1.4"


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verify", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def provisioned_pi(root: FakeRoot, **fact: Any) -> FakeRoot:
    return (
        root.os_release("bookworm")
        .board(PI4)
        .dpkg({"libedgetpu1-std": "16.0tf2.17.1-1"})
        .library()
        .udev()
        .users()
        .usb("1a6e", "089a", "5000")
        .config_txt("camera_auto_detect=1\n")
        .fact(standard_fact(opencv_source=None, **fact))
    )


def test_json_report_of_a_provisioned_pi(fake_root: FakeRoot) -> None:
    provisioned_pi(fake_root)
    done = run_verify("--json", "--no-smoke", "--root", str(fake_root.path), "--user", "pi")
    assert done.returncode == 0, done.stdout + done.stderr
    document = json.loads(done.stdout)
    facts = document["facts"]
    assert (facts["os_id"], facts["os_codename"], facts["board"], facts["boot_config"]) == (
        "debian",
        "bookworm",
        PI4,
        "/boot/firmware/config.txt",
    )
    assert facts["arch"] and facts["expected_from"] == "local fact"
    assert "smoke" not in document
    statuses = {c["name"]: c["status"] for c in document["checks"]}
    assert statuses["edgetpu_runtime"] == "pass" and statuses["usb_accelerator"] == "pass"
    assert statuses["camera"] == "pass" and statuses["drift"] == "pass"
    assert statuses["user_groups"] == "pass"
    # a Pi 4 (no Pi 5 USB limit); nothing is run under --root, so no sensor was asked for
    assert statuses["usb_power"] == "skip" and statuses["camera_sensor"] == "skip"
    assert facts["camera_sensors"] is None
    assert facts["usb_power"] == {
        "supply_max_ma": None,
        "usb_max_current_enable": None,
        "over_current": None,
    }
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in document["checks"])
    assert document["result"] in ("pass", "warn")


def test_drift_and_missing_group_fail_with_exit_2(fake_root: FakeRoot) -> None:
    provisioned_pi(fake_root).dpkg({"libedgetpu1-max": "16.0tf2.17.1-1"}).users(plugdev="")
    done = run_verify("--json", "--no-smoke", "--root", str(fake_root.path), "--user", "pi")
    assert done.returncode == 2
    checks = {c["name"]: c for c in json.loads(done.stdout)["checks"]}
    assert checks["drift"]["status"] == "fail"
    assert checks["drift"]["fix"] == "re-run `coralpi apply`"
    assert checks["edgetpu_runtime"]["status"] == "fail"
    assert checks["user_groups"]["status"] == "fail"


def test_plan_file_overrides_the_local_fact(fake_root: FakeRoot, tmp_path: Path) -> None:
    provisioned_pi(fake_root)
    plan = {
        "choices": {"runtime": "max", "accelerator": "usb", "camera": True},
        "runtime": {
            "source": "community-deb",
            "package": "libedgetpu1-max",
            "version": "16.0tf2.17.1-1",
        },
    }
    plan_file = tmp_path / "plans.json"
    plan_file.write_text(json.dumps({"coralpi_plans": {"pi-1": plan}}))
    done = run_verify(
        "--json",
        "--no-smoke",
        "--root",
        str(fake_root.path),
        "--plan",
        str(plan_file),
        "--user",
        "pi",
    )
    assert done.returncode == 2
    document = json.loads(done.stdout)
    assert document["facts"]["expected_from"] == f"plan {plan_file}"
    checks = {c["name"]: c for c in document["checks"]}
    assert "max expected" in checks["edgetpu_runtime"]["detail"]
    assert "plan wants runtime_package=libedgetpu1-max" in checks["drift"]["detail"]


def test_plain_text_when_not_a_terminal(fake_root: FakeRoot) -> None:
    provisioned_pi(fake_root)
    done = run_verify("--no-smoke", "--root", str(fake_root.path), "--user", "pi")
    assert done.returncode == 0
    assert "edgetpu_runtime" in done.stdout and "libedgetpu1-std 16.0tf2.17.1-1" in done.stdout
    assert "\x1b[" not in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("result: ")


@pytest.mark.parametrize(
    "args",
    [
        ["--count", "0"],
        ["--bogus"],
        ["--root", "/nonexistent/coralpi-root"],
        ["--model", "m.tflite"],
        ["--plan", "/nonexistent/plan.json"],
    ],
)
def test_usage_errors_exit_1(args: list[str]) -> None:
    done = run_verify("--no-smoke", *args)
    assert done.returncode == 1, done.stderr
    assert done.stdout == ""


def test_broken_plan_json_is_a_usage_error(tmp_path: Path) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text("{broken")
    done = run_verify("--no-smoke", "--plan", str(plan))
    assert done.returncode == 1 and "plan" in done.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_rich_table_on_a_terminal_and_json_otherwise() -> None:
    pytest.importorskip("rich")
    document = {
        "facts": {
            "os_id": "debian",
            "os_codename": "bookworm",
            "arch": "aarch64",
            "board": PI4,
            "boot_config": "/boot/firmware/config.txt",
        },
        "checks": [
            {
                "name": "usb_accelerator",
                "status": "warn",
                "detail": "no accelerator attached",
                "fix": "plug it in",
            },
            {
                "name": "camera",
                "status": "fail",
                "detail": "camera_auto_detect=0 under [pi4] [/]",
                "fix": "x",
            },
        ],
        "smoke": {
            "device": "cpu",
            "runtime": {"package": "tflite-runtime", "version": "2.14.0"},
            "model": "m.tflite",
            "top": [{"label": "Ara macao (Scarlet Macaw)", "score": 0.8}],
            "latency_ms": {"first": 1.0, "median": 1.0, "p95": 1.0},
            "note": "ran on the CPU",
        },
        "result": "warn",
    }
    terminal = _Terminal()
    report.render(document, terminal, as_json=False)
    text = terminal.getvalue()
    assert "┃" in text or "│" in text  # a rich table
    assert "no accelerator attached" in text and "Ara macao" in text
    assert "[pi4] [/]" in text  # shown as written, not taken for markup
    piped = io.StringIO()
    report.render(document, piped, as_json=True)
    assert json.loads(piped.getvalue()) == document


def test_preload_is_seen_through_ld_preload_or_a_venv_pth(tmp_path: Path) -> None:
    from verify.facts import find_library
    from verify.rootfs import RootFS

    lib = find_library(RootFS("/"), "libatomic.so.1")
    if lib is None:
        pytest.skip("libatomic.so.1 not installed here")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"ld_preload": lib}))

    def ld_preload_check(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
        assert done.returncode in (0, 2), done.stderr
        return next(c for c in json.loads(done.stdout)["checks"] if c["name"] == "ld_preload")

    missing = ld_preload_check(run_verify("--json", "--no-smoke", "--plan", str(plan)))
    assert missing["status"] == "fail" and "coralpi_opencv" in missing["fix"]

    site = tmp_path / "venv" / "lib" / "site-packages"
    site.mkdir(parents=True)
    (site / "coralpi-ld-preload.pth").write_text(
        f'import ctypes; ctypes.CDLL("{lib}", mode=ctypes.RTLD_GLOBAL)\n'
    )
    launcher = (
        "import runpy, site, sys; site.addsitedir(sys.argv.pop(1)); "
        "sys.argv[0] = 'verify'; runpy.run_module('verify', run_name='__main__')"
    )
    by_pth = subprocess.run(
        [sys.executable, "-c", launcher, str(site), "--json", "--no-smoke", "--plan", str(plan)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = ld_preload_check(by_pth)
    assert found["status"] == "pass" and "coralpi-ld-preload.pth" in found["detail"]

    env_done = subprocess.run(
        [sys.executable, "-m", "verify", "--json", "--no-smoke", "--plan", str(plan)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "LD_PRELOAD": lib},
    )
    assert ld_preload_check(env_done)["status"] == "pass"


def test_an_internal_error_still_gives_a_report(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from verify import cli, facts

    def broken(*args: object) -> None:
        raise RuntimeError("sysfs exploded")

    monkeypatch.setattr(facts, "gather_system", broken)
    assert cli.main(["--json", "--no-smoke"]) == 2
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert document["result"] == "fail"
    assert document["checks"][0]["name"] == "verify"
    assert "sysfs exploded" in document["checks"][0]["detail"]
    assert "Traceback" in err
