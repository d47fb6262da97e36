"""`coralpi plan` through its real entry points, plus the inventory hook in-process."""

from __future__ import annotations

import argparse
import io
import json
import platform
import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from provision.commands import plan_cmd
from provision.errors import ConfigError
from provision.planning.matrix import resolve
from provision.planning.probe import ProbeResult
from provision.planning.targets import Choices, Target

ROOT = Path(__file__).resolve().parents[2]
CORALPI = Path(sys.executable).with_name("coralpi")


def run_cli(*args: str, module: bool = False) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "provision", *args] if module else [str(CORALPI), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)


@pytest.fixture(scope="module", autouse=True)
def _entry_point_installed() -> None:
    if not CORALPI.exists():
        pytest.skip("the coralpi console script is not installed in this venv")


def test_plan_json_through_the_console_script() -> None:
    proc = run_cli("plan", "--os", "bookworm", "--arch", "arm64", "--python", "3.11", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["target"] == {
        "os_id": "debian",
        "codename": "bookworm",
        "arch": "aarch64",
        "python": "3.11",
        "glibc": "2.36",
        "board": None,
        "glibcxx": None,  # not probed: the lock uses bookworm's own level (matrix.toml)
        "cxxabi": None,
    }
    assert data["python_runtime"]["version"] == "2.14.0"
    assert data["runtime"]["deb_filename"] == "libedgetpu1-std_16.0tf2.17.1-1.bookworm_arm64.deb"
    assert isinstance(data["reasons"], list) and data["reasons"]
    assert "controller" in data


def test_python_m_provision_gives_the_same_plan() -> None:
    args = ("plan", "--os", "trixie", "--arch", "x86_64", "--python", "3.13", "--json")
    via_module = run_cli(*args, module=True)
    via_script = run_cli(*args)
    assert via_module.returncode == 0, via_module.stderr
    assert json.loads(via_module.stdout) == json.loads(via_script.stdout)
    assert json.loads(via_module.stdout)["python_runtime"]["package"] == "ai-edge-litert"


def test_choice_flags_reach_the_plan() -> None:
    proc = run_cli(
        "plan", "--os", "bookworm", "--arch", "armhf", "--python", "3.11",
        "--board", "Raspberry Pi 3 Model B Plus Rev 1.3", "--runtime", "max",
        "--accept-max-eula", "--opencv", "pip", "--pip-index-url",
        "https://www.piwheels.org/simple", "--no-camera", "--glibc", "2.36", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["runtime"]["package"] == "libedgetpu1-max"
    assert data["ld_preload"] == "/usr/lib/arm-linux-gnueabihf/libatomic.so.1"
    assert data["camera"]["method"] == "none"
    assert data["choices"]["pip_index_url"] == "https://www.piwheels.org/simple"


def test_unsupported_exits_1_naming_the_nearest() -> None:
    proc = run_cli("plan", "--os", "trixie", "--arch", "armv7l", "--python", "3.13", "--json")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "bookworm armv7l python 3.11" in proc.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--runtime", "max"], "--accept-max-eula must be given"),
        (["--runtime", "mid"], "invalid choice"),
        (["--arch", "riscv64"], "riscv64"),
        (["--os", "focal"], "unknown release"),
    ],
)
def test_refusals_exit_1(args: list[str], needle: str) -> None:
    base = {"--os": "bookworm", "--arch": "x86_64", "--python": "3.11"}
    pairs = dict(zip(args[::2], args[1::2], strict=True))
    argv = [x for k, v in {**base, **pairs}.items() for x in (k, v)]
    proc = run_cli("plan", *argv)
    assert proc.returncode == 1, proc.stdout
    assert needle in proc.stderr


def test_missing_python_is_a_usage_error() -> None:
    proc = run_cli("plan", "--os", "bookworm", "--arch", "x86_64")
    assert proc.returncode == 1
    assert "--python" in proc.stderr


def test_all_rows_summarise_the_matrix() -> None:
    proc = run_cli("plan", "--all", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {row["target"]: row for row in json.loads(proc.stdout)}
    assert len(rows) == 7 * 3  # every release x architecture
    assert rows["bookworm armv7l python 3.11"]["python_runtime"] == "tflite-runtime==2.14.0"
    refused = {t for t, row in rows.items() if not row["supported"]}
    assert refused == {
        "trixie armv7l python 3.13",
        "noble armv7l python 3.12",
        "resolute armv7l python 3.14",
    }
    assert rows["resolute aarch64 python 3.14"]["python_runtime"] == "ai-edge-litert==2.3.0"
    assert rows["trixie armv7l python 3.13"]["nearest"] == "bookworm armv7l python 3.11"
    plain = run_cli("plan", "--all")
    assert "trixie armv7l python 3.13: REFUSED (nearest: bookworm armv7l python 3.11)" in (
        plain.stdout.splitlines()
    )


def test_plain_output_when_not_a_terminal() -> None:
    proc = run_cli("plan", "--os", "buster", "--arch", "armv7l", "--python", "3.7",
                   "--board", "Raspberry Pi 4 Model B Rev 1.4")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout  # no terminal styling in a pipe
    lines = proc.stdout.splitlines()
    assert lines[0] == "plan for buster armv7l python 3.7"
    assert any(
        line.strip().startswith("runtime: libedgetpu1-std 16.0 (coral-apt, TF 2.5.0)")
        for line in lines
    )
    assert not any(line.strip().startswith("source:") for line in lines)  # only with --sources
    assert any(line.strip().startswith("controller: ansible-core>=2.17,<2.18") for line in lines)
    assert any(line.strip().startswith("controller check:") for line in lines)


def test_sources_show_where_each_fact_used_was_read() -> None:
    proc = run_cli("plan", "--os", "trixie", "--arch", "aarch64", "--python", "3.13",
                   "--board", "Raspberry Pi 5 Model B Rev 1.0", "--sources")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    sources = [ln.strip() for ln in proc.stdout.splitlines() if ln.strip().startswith("source:")]
    whats = [ln.split(":", 2)[1].strip() for ln in sources]
    for what in ("release trixie", "python runtime ai-edge-litert", "runtime source community-deb",
                 "board Raspberry Pi 5", "accelerator usb"):  # fmt: skip
        assert what in whats, sources
    assert all(re.search(r"\(checked \d{4}-\d{2}-\d{2}\)$", ln) for ln in sources), sources
    assert any("feranick/libedgetpu" in ln for ln in sources)


def test_plan_explains_ansible_on_the_pi_for_images() -> None:
    """image prepare/build run Ansible on the Pi: the plan says which, or why it cannot."""
    armv7l = run_cli("plan", "--os", "bookworm", "--arch", "armv7l", "--python", "3.11")
    assert armv7l.returncode == 0, armv7l.stderr
    line = next(ln for ln in armv7l.stdout.splitlines() if "image prepare/build" in ln)
    assert "pure-Python wheel" in line and "python3-cryptography" in line
    assert "no armv7l" in line
    buster = run_cli("plan", "--os", "buster", "--arch", "armv7l", "--python", "3.7")
    line = next(ln for ln in buster.stdout.splitlines() if "image prepare/build" in ln)
    assert "not possible" in line and "python 3.7" in line


def test_rich_table_rendering() -> None:
    plan = resolve(Target("debian", "bookworm", "aarch64", "3.11", "2.36"), Choices())
    out = io.StringIO()
    plan_cmd.render_table(plan, "plan for test", out)
    text = out.getvalue()
    for field in ("python_runtime", "tflite-runtime==2.14.0", "controller check"):
        assert field in text


# ---------------------------------------------------------------------------------------
# Real hosts: the inventory through the planning service, with a recorded probe.

FACTS: dict[str, dict[str, Any]] = {
    "pi-a": {
        "ansible_distribution": "Debian",
        "ansible_distribution_release": "bookworm",
        "ansible_architecture": "aarch64",
        "ansible_python_version": "3.11.2",
        "coralpi_glibc": "2.36",
        "coralpi_board": "Raspberry Pi 5 Model B Rev 1.0",
    },
    "pi-old": {
        "ansible_distribution": "Raspbian",
        "ansible_distribution_release": "trixie",
        "ansible_architecture": "armv7l",
        "ansible_python_version": "3.13.5",
        "coralpi_glibc": "2.41",
    },
}
INVENTORY = """\
all:
  hosts:
    pi-a:
      coralpi_runtime: max
      coralpi_accept_max_eula: true
    pi-old: {}
    pi-down: {}
"""


class RecordedProbe:
    """Stands in for the probe play: the facts above, pi-down unreachable; it keeps what it
    was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[str | None, dict[str, Any]]] = []

    def __call__(
        self, inventory: Path, run_dir: Path, limit: str | None, extravars: Mapping[str, Any]
    ) -> ProbeResult:
        self.calls.append((limit, dict(extravars)))
        names = [h for h in ("pi-a", "pi-old", "pi-down") if limit is None or h == limit]
        return ProbeResult(
            facts={h: FACTS[h] for h in names if h in FACTS},
            failed={h: "unreachable: ssh timed out" for h in names if h == "pi-down"},
        )


@pytest.fixture()
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yml"
    path.write_text(INVENTORY)
    return path


def test_inventory_plans_each_host_with_its_own_variables(inventory: Path) -> None:
    plans, errors = plan_cmd.plan_inventory(inventory, None, {}, RecordedProbe())
    assert set(plans) == {"pi-a"}
    assert plans["pi-a"].runtime.package == "libedgetpu1-max"
    assert plans["pi-a"].camera.method == "camera-auto-detect"
    assert "trixie armv7l python 3.13" in errors["pi-old"], errors
    assert "unreachable" in errors["pi-down"]


def test_inventory_flags_override_host_variables(inventory: Path) -> None:
    plans, _ = plan_cmd.plan_inventory(
        inventory, "pi-a", {"coralpi_runtime": "std"}, RecordedProbe()
    )
    assert plans["pi-a"].runtime.package == "libedgetpu1-std"


def test_inventory_run_prints_json_and_exits_1_on_a_failed_host(
    inventory: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    plan_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["plan", "-i", str(inventory), "--json"])
    assert plan_cmd.run(args, prober=RecordedProbe()) == 1
    captured = capsys.readouterr()
    data = json.loads(captured.out)
    assert set(data["plans"]) == {"pi-a"}
    assert set(data["errors"]) == {"pi-old", "pi-down"}
    assert "pi-old" in captured.err

    args = parser.parse_args(["plan", "-i", str(inventory), "--limit", "pi-a"])
    assert plan_cmd.run(args, prober=RecordedProbe()) == 0
    assert "pi-a: bookworm aarch64 python 3.11" in capsys.readouterr().out


def test_connection_variables_given_with_e_reach_the_probe(inventory: Path) -> None:
    parser = argparse.ArgumentParser()
    plan_cmd.register(parser.add_subparsers())
    probe = RecordedProbe()
    args = parser.parse_args(
        [
            "plan",
            "-i",
            str(inventory),
            "-e",
            "ansible_user=admin",
            "-e",
            "ansible_port=2222",
            "-e",
            "coralpi_opencv=pip",
            "--json",
        ]
    )
    plan_cmd.run(args, prober=probe)
    assert probe.calls == [(None, {"ansible_user": "admin", "ansible_port": "2222"})]


def test_a_bad_value_is_refused_before_the_probe_runs(inventory: Path) -> None:
    inventory.write_text(INVENTORY.replace("pi-old: {}", "pi-old: {coralpi_camera: y}"))
    probe = RecordedProbe()
    with pytest.raises(ConfigError, match="host pi-old: coralpi_camera"):
        plan_cmd.plan_inventory(inventory, None, {}, probe)
    assert probe.calls == []


def test_inventory_plan_probes_this_machine() -> None:
    # The default facts provider runs the read-only probe play over a local connection.
    inventory = ROOT / "inventory" / "localhost.yml"
    if not inventory.exists():
        pytest.skip("no inventory/localhost.yml")
    proc = run_cli("plan", "-i", str(inventory.relative_to(ROOT)), "--json")
    data = json.loads(proc.stdout)
    assert proc.returncode == (1 if data["errors"] else 0), proc.stderr
    assert set(data["plans"]) | set(data["errors"]) == {"localhost"}
    if data["plans"]:
        target = data["plans"]["localhost"]["target"]
        assert target["arch"] == platform.machine()
        assert target["glibc"] == ".".join(platform.libc_ver()[1].split(".")[:2])


def test_usage_errors_name_the_command_once_and_suggest_the_nearest() -> None:
    typo = run_cli("aply", "-i", "x.yml")
    assert typo.returncode == 1
    assert typo.stderr.startswith("coralpi: argument COMMAND: invalid choice: 'aply'")
    assert "did you mean apply?" in typo.stderr
    missing = run_cli("plan")
    assert missing.returncode == 1
    assert missing.stderr.startswith("coralpi plan: one of the arguments")
    assert "coralpi: coralpi" not in typo.stderr + missing.stderr
    far = run_cli("plan", "--opencv", "zzzz", "--os", "bookworm")
    assert "invalid choice: 'zzzz'" in far.stderr and "did you mean" not in far.stderr


PI5_ARGS = ("plan", "--os", "bookworm", "--arch", "arm64", "--python", "3.11")
PI5_ARGS += ("--board", "Raspberry Pi 5 Model B Rev 1.0", "--accelerator", "pcie")


def test_plan_for_a_pi5_with_the_m2_coral_lists_every_change_as_data() -> None:
    proc = run_cli(*PI5_ARGS, "--json")
    assert proc.returncode == 0, proc.stderr
    pcie = json.loads(proc.stdout)["pcie"]
    assert pcie["config_path"] == "/boot/firmware/config.txt"
    assert pcie["config_lines"] == [
        "dtparam=pciex1",
        "dtoverlay=pciex1-compat-pi5,no-mip",
        "dtoverlay=pcie-32bit-dma-pi5",
        "kernel=kernel8.img",
    ]
    assert (pcie["kernel"], pcie["headers_packages"]) == ("kernel8.img", ["linux-headers-rpi-v8"])
    assert (pcie["driver_package"], pcie["driver_version"]) == ("gasket-dkms", "1.0-18.4")
    assert pcie["reboot"] == "when config.txt changes"
    text = run_cli(*PI5_ARGS)
    assert text.returncode == 0, text.stderr
    for said in ("pcie_boot:", "kernel=kernel8.img", "reboot needed", "pcie_driver:"):
        assert said in text.stdout, said


def test_plan_refuses_the_m2_coral_on_a_pi4_naming_the_flag() -> None:
    proc = run_cli(
        *PI5_ARGS[:7], "--board", "Raspberry Pi 4 Model B Rev 1.4", "--accelerator", "pcie"
    )
    assert proc.returncode == 1
    assert "has no PCIe lane" in proc.stderr and "--accelerator usb" in proc.stderr
