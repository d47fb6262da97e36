"""ansible-playbook's habits on the coralpi command line: -v, --forks, --list-hosts,
--tags/--skip-tags, -e @FILE and inline JSON, -l; errors that name what was typed; exit 2
for a host that cannot be reached; the probe's progress for `plan -i`.

Through the real entry point where practical. Inventories here hold hosts at 127.0.0.1
port 9 (discard, closed): nothing could be reached, and nothing leaves this machine.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from provision.commands import options, plan_cmd
from provision.commands.options import FlagFor, name_flags, parse_extra_vars
from provision.driver import playbook_tags
from provision.driver.runner import HostProgress, run_playbook
from provision.errors import ConfigError, HostFailed
from provision.image import planning
from provision.planning.probe import ProbeResult

CORALPI = str(Path(sys.executable).parent / "coralpi")

CLOSED = "      ansible_host: 127.0.0.1\n      ansible_port: 9\n"
TWO_HOSTS = f"all:\n  hosts:\n    pi1:\n{CLOSED}    pi2:\n{CLOSED}"


def coralpi(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CORALPI, *args], capture_output=True, text=True, timeout=180, check=False, cwd=cwd
    )


@pytest.fixture()
def closed(tmp_path: Path) -> Path:
    """Two hosts on a closed loopback port."""
    path = tmp_path / "closed.yml"
    path.write_text(TWO_HOSTS)
    return path


def _entries(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir()) if path.exists() else []


# ---------------------------------------------------------------------------------------
# -e as ansible-playbook takes it


def test_extra_vars_from_files_and_inline_json(tmp_path: Path) -> None:
    yml = tmp_path / "vars.yml"
    yml.write_text("coralpi_runtime: max\ncoralpi_accept_max_eula: true\nansible_port: 2222\n")
    js = tmp_path / "vars.json"
    js.write_text('{"coralpi_opencv": "pip", "ansible_user": "pi"}')
    empty = tmp_path / "empty.yml"
    empty.write_text("")
    got = parse_extra_vars(
        [
            "coralpi_runtime=std",
            f"@{yml}",
            f"@{js}",
            f"@{empty}",
            '{"coralpi_camera": false, "coralpi_coral_key_fingerprints": ["A", "B"]}',
            "{coralpi_user: admin}",  # inline YAML, as ansible-playbook reads it too
        ]
    )
    assert got == {
        "coralpi_runtime": "max",  # the file came later than NAME=VALUE
        "coralpi_accept_max_eula": True,
        "ansible_port": 2222,
        "coralpi_opencv": "pip",
        "ansible_user": "pi",
        "coralpi_camera": False,
        "coralpi_coral_key_fingerprints": ["A", "B"],
        "coralpi_user": "admin",
    }
    assert parse_extra_vars([f"@{js}", "coralpi_opencv=apt"])["coralpi_opencv"] == "apt"


@pytest.mark.parametrize(
    ("item", "needle"),
    [
        ("@{tmp}/absent.yml", "absent.yml: no such file"),
        ("@{tmp}/list.yml", "expected an object of NAME: VALUE pairs, not a list"),
        ("@{tmp}/date.yml", "coralpi_x: a date cannot be passed to Ansible"),
        ('{"ansible_become_password": "s3cret" ', "-e JSON: not a YAML or JSON object (line 1"),
        ("[1, 2]", "-e JSON: expected an object of NAME: VALUE pairs, not a list"),
        ('{"": 1}', "is not a variable name"),
        ("novalue", "expected VAR=VALUE, @FILE (YAML or JSON) or a JSON object"),
    ],
)
def test_bad_extra_vars_name_the_item_not_its_contents(
    tmp_path: Path, item: str, needle: str
) -> None:
    (tmp_path / "list.yml").write_text("- coralpi_runtime\n")
    (tmp_path / "date.yml").write_text("coralpi_x: 2024-01-01\n")
    with pytest.raises(ConfigError) as caught:
        parse_extra_vars([item.replace("{tmp}", str(tmp_path))])
    assert needle in caught.value.message
    assert "s3cret" not in caught.value.message


def test_commands_without_ansible_take_only_coralpi_names_from_files(tmp_path: Path) -> None:
    path = tmp_path / "vars.yml"
    path.write_text("ansible_user: pi\n")
    with pytest.raises(ConfigError, match=r"ansible_user: only coralpi_\* settings"):
        parse_extra_vars([f"@{path}"], coralpi_only=True)


def test_extra_vars_files_are_checked_like_the_inventory(tmp_path: Path, closed: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("coralpi_runtime: fast\n")
    runs = tmp_path / "runs"
    for given, needle in (
        (f"@{bad}", "coralpi_runtime: 'fast' is not one of std, max"),
        ('{"coralpi_camera": "sometimes"}', "coralpi_camera"),
        ('{"coralpi_runtimes": "std"}', "unknown variable coralpi_runtimes"),
    ):
        proc = coralpi("apply", "-i", str(closed), "-e", given, "--runs-dir", str(runs))
        assert proc.returncode == 1, proc.stderr
        assert needle in proc.stderr
        assert _entries(runs) == [], "a run started despite a bad -e value"


# ---------------------------------------------------------------------------------------
# --list-hosts


@pytest.mark.parametrize("command", [["apply"], ["verify"], ["plan"]])
def test_list_hosts_prints_the_selected_hosts_and_touches_nothing(
    tmp_path: Path, closed: Path, command: list[str]
) -> None:
    runs = tmp_path / "runs"
    extra = [] if command == ["plan"] else ["--runs-dir", str(runs)]
    every = coralpi(*command, "-i", str(closed), "--list-hosts", *extra, cwd=tmp_path)
    assert every.returncode == 0, every.stderr
    assert every.stdout == "hosts (2):\n  pi1\n  pi2\n"
    one = coralpi(*command, "-i", str(closed), "-l", "pi2", "--list-hosts", "--json", *extra)
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == {"hosts": ["pi2"]}
    assert "pi1" not in one.stderr  # no progress line: no probe ran
    assert _entries(runs) == [] and _entries(tmp_path) == ["closed.yml"]


def test_list_hosts_with_retry_failed_lists_the_last_failures(tmp_path: Path, closed: Path) -> None:
    runs = tmp_path / "runs"
    last = runs / "20240101-000000-000000-verify"
    last.mkdir(parents=True)
    (last / "report.json").write_text(json.dumps({"failed_hosts": ["pi2"]}))
    proc = coralpi(
        "verify", "-i", str(closed), "--retry-failed", "--list-hosts", "--runs-dir", str(runs)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "hosts (1):\n  pi2\n"
    assert _entries(runs) == [last.name]


def test_list_hosts_and_limit_go_with_an_inventory_on_plan_and_lock() -> None:
    for args, needle in (
        (["plan", "--os", "bookworm", "--list-hosts"], "plan: --list-hosts goes with -i"),
        (["plan", "--os", "bookworm", "-l", "pi1"], "plan: --limit goes with -i"),
        (["lock", "--platform", "bookworm/aarch64/3.11", "-l", "pi1"], "lock: --limit goes"),
    ):
        proc = coralpi(*args)
        assert proc.returncode == 1 and needle in proc.stderr, proc.stderr


def test_every_command_that_reads_an_inventory_takes_limit() -> None:
    for command in (["plan"], ["apply"], ["verify"], ["lock"], ["image", "prepare"]):
        proc = coralpi(*command, "--help")
        assert "-l LIMIT, --limit LIMIT" in proc.stdout, command


# ---------------------------------------------------------------------------------------
# --tags / --skip-tags


def _tagged_tree(root: Path) -> Path:
    """Playbooks as they read once each role's inclusion is tagged with its name."""
    (root / "roles" / "r_one" / "tasks").mkdir(parents=True)
    (root / "roles" / "r_two" / "tasks").mkdir(parents=True)
    (root / "roles" / "r_one" / "tasks" / "main.yml").write_text(
        "- name: inner\n  ansible.builtin.debug: {msg: x}\n  tags: [r_one_inner]\n"
        "- name: more\n  ansible.builtin.include_tasks: more.yml\n"
    )
    (root / "roles" / "r_one" / "tasks" / "more.yml").write_text(
        "- name: more\n  ansible.builtin.debug: {msg: y}\n  tags: deep,never\n"
    )
    (root / "roles" / "r_two" / "tasks" / "main.yml").write_text(
        "- name: two\n  ansible.builtin.debug: {msg: z}\n"
    )
    (root / "tasks").mkdir()
    (root / "tasks" / "take.yml").write_text(
        "- name: take\n  ansible.builtin.set_fact: {a: 1}\n  tags: [taken]\n"
    )
    (root / "first.yml").write_text(
        "- name: first\n  hosts: all\n  pre_tasks:\n"
        "    - name: take\n      ansible.builtin.include_tasks:\n        file: tasks/take.yml\n"
        "        apply: {tags: [always]}\n      tags: [always]\n"
        "  roles:\n    - role: r_one\n      tags: [r_one]\n    - {role: r_two, tags: r_two}\n"
    )
    (root / "second.yml").write_text(
        "- name: second\n  hosts: all\n  tasks:\n    - name: b\n      block:\n"
        "        - name: in block\n          ansible.builtin.debug: {msg: b}\n"
        "          tags: ['{{ templated }}', blocked]\n"
    )
    (root / "site.yml").write_text(
        "- name: First\n  ansible.builtin.import_playbook: first.yml\n"
        "- name: Second\n  import_playbook: second.yml\n"
    )
    return root


def test_playbook_tags_are_read_from_plays_roles_and_role_tasks(tmp_path: Path) -> None:
    root = _tagged_tree(tmp_path)
    assert playbook_tags.playbook_tags(root / "site.yml") == {
        "r_one",
        "r_two",
        "r_one_inner",
        "deep",
        "taken",
        "blocked",
    }
    assert playbook_tags.playbook_tags(root / "second.yml") == {"blocked"}


def test_an_unknown_tag_is_refused_naming_the_known_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _tagged_tree(tmp_path)
    monkeypatch.setattr(playbook_tags, "playbook", lambda name: root / name)
    monkeypatch.setattr(playbook_tags, "shared", lambda *parts: root / "roles")
    playbook_tags.check_tags("site.yml", ["r_one"], ["r_two", "deep"])  # all known
    with pytest.raises(ConfigError) as caught:
        playbook_tags.check_tags("site.yml", ["r_one", "r_three"], ["always"])
    message = caught.value.message
    assert message.startswith("--tags r_three, --skip-tags always: not a tag of playbooks/site")
    assert "known tags: blocked, deep, r_one, r_one_inner, r_two, taken" in message


def test_apply_refuses_an_unknown_tag_before_any_host_is_touched(
    tmp_path: Path, closed: Path
) -> None:
    runs = tmp_path / "runs"
    proc = coralpi(
        "apply", "-i", str(closed), "--tags", "coralpi_apt,nosuchrole", "--runs-dir", str(runs)
    )
    assert proc.returncode == 1, proc.stderr
    assert "--tags nosuchrole" in proc.stderr and "playbooks/site.yml" in proc.stderr
    assert _entries(runs) == []
    check = coralpi("apply", "--check", "-i", str(closed), "--skip-tags", "nosuchrole")
    assert check.returncode == 1 and "playbooks/provision.yml" in check.stderr
    assert "--tags" not in coralpi("verify", "--help").stdout  # by role, on apply only


# ---------------------------------------------------------------------------------------
# -v, --forks, --tags on ansible-playbook's command line


def test_run_playbook_passes_verbosity_forks_and_tags(tmp_path: Path) -> None:
    book = tmp_path / "book.yml"
    book.write_text(
        "- name: t\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: say\n      ansible.builtin.debug: {msg: hello}\n      tags: [a]\n"
    )
    inventory = tmp_path / "inv.yml"
    inventory.write_text(
        "all:\n  hosts:\n    here:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    run_dir = tmp_path / "run dir with spaces"  # the command line is quoted
    result = run_playbook(
        book, inventory, run_dir, forks=3, verbosity=2, tags=["a", "b"], skip_tags=["c"]
    )
    assert result.rc == 0 and result.hosts["here"].ok == 1, result
    command = json.loads((result.artifact_dir / "command").read_text())["command"]
    joined = " ".join(command)
    assert "--forks 3" in joined and "-vv" in command
    assert "--tags a,b" in joined and "--skip-tags c" in joined
    assert "hello" in (result.artifact_dir / "stdout").read_text()


def test_verbose_output_comes_while_the_playbook_runs(tmp_path: Path) -> None:
    """-v: Ansible's output of a task is shown before the next task starts, not after the
    run; a secret in a URL is masked there too."""
    book = tmp_path / "book.yml"
    book.write_text(
        "- name: t\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: first\n      ansible.builtin.debug: {msg: 'http://u:s3cret@mirror.invalid/x'}\n"
        "    - name: second\n      ansible.builtin.debug: {msg: later}\n"
    )
    inventory = tmp_path / "inv.yml"
    inventory.write_text(
        "all:\n  hosts:\n    here:\n      ansible_connection: local\n"
        f"      ansible_python_interpreter: {sys.executable}\n"
    )
    shown = io.StringIO()
    seen_at_second: list[str] = []

    def on_change(progress: HostProgress, what: str) -> None:
        if what == "start" and progress.task == "second":
            seen_at_second.append(shown.getvalue())

    result = run_playbook(
        book, inventory, tmp_path / "run", verbosity=1, echo=shown, on_change=on_change
    )
    assert result.rc == 0, result
    (before_second,) = seen_at_second
    assert before_second.startswith("--- ansible-playbook (book) ---")
    assert "TASK [first]" in before_second and "mirror.invalid" in before_second
    assert "later" not in before_second and "later" in shown.getvalue()
    assert "s3cret" not in shown.getvalue()


def test_verbosity_and_forks_reach_the_fleet_run_and_its_output_is_shown(
    tmp_path: Path, closed: Path
) -> None:
    runs = tmp_path / "runs"
    proc = coralpi(
        "verify", "-i", str(closed), "-vvv", "--forks", "3", "--json", "--runs-dir", str(runs)
    )
    assert proc.returncode == 2, proc.stderr  # both hosts unreachable
    report = json.loads(proc.stdout)  # stdout stays the report
    assert sorted(report["failed_hosts"]) == ["pi1", "pi2"]
    (run,) = runs.iterdir()
    command = json.loads((run / "artifacts" / "probe" / "command").read_text())["command"]
    assert "-vvv" in command and command[command.index("--forks") + 1] == "3"
    assert "--- ansible-playbook (probe)" in proc.stderr
    assert "ESTABLISH SSH CONNECTION" in proc.stderr  # -vvv's connection debugging
    bad = coralpi("apply", "-i", str(closed), "--forks", "0")
    assert bad.returncode == 1 and "--forks: '0' is not a whole number" in bad.stderr


# ---------------------------------------------------------------------------------------
# plan -i: progress, -v, exit 2 for an unreachable host


def test_plan_of_an_unreachable_host_exits_2_with_the_probes_progress(closed: Path) -> None:
    text = coralpi("plan", "-i", str(closed), "-l", "pi1")
    assert text.returncode == 2, text.stderr
    assert "[pi1] unreachable" in text.stderr  # the probe's progress line
    assert "coralpi: pi1: not probed: unreachable" in text.stderr
    quiet = coralpi("plan", "-i", str(closed), "--json", "-v")
    assert quiet.returncode == 2, quiet.stderr
    assert set(json.loads(quiet.stdout)["errors"]) == {"pi1", "pi2"}
    assert "[pi1] unreachable" not in quiet.stderr  # --json: no progress lines
    assert "--- ansible-playbook (probe) ---" in quiet.stderr  # -v: Ansible's output
    assert "UNREACHABLE!" in quiet.stderr


class OneDown:
    """The probe stood in: pi-up answers with bookworm facts, pi-down is unreachable."""

    def __call__(
        self, inventory: Path, run_dir: Path, limit: str | None, extravars: Mapping[str, Any]
    ) -> ProbeResult:
        facts = {
            "ansible_distribution": "Debian",
            "ansible_distribution_release": "bookworm",
            "ansible_architecture": "aarch64",
            "ansible_python_version": "3.11.2",
            "coralpi_glibc": "2.36",
        }
        names = [h for h in ("pi-up", "pi-down") if limit in (None, h)]
        return ProbeResult(
            facts={h: facts for h in names if h == "pi-up"},
            failed={h: "unreachable: ssh timed out" for h in names if h == "pi-down"},
        )


def _plan_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    plan_cmd.register(parser.add_subparsers())
    return parser.parse_args(["plan", *argv])


def test_plan_exit_codes_unreachable_2_refused_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inventory = tmp_path / "inv.yml"
    inventory.write_text("all:\n  hosts:\n    pi-up: {}\n    pi-down: {}\n")
    with pytest.raises(HostFailed):
        plan_cmd.run(_plan_args("-i", str(inventory), "--json"), prober=OneDown())
    assert plan_cmd.run(_plan_args("-i", str(inventory), "-l", "pi-up"), prober=OneDown()) == 0
    capsys.readouterr()
    # A refusal and an unreachable host: the refusal (a configuration error) wins.
    refused = _plan_args("-i", str(inventory), "--runtime", "max", "--json")
    assert plan_cmd.run(refused, prober=OneDown()) == 1
    errors = json.loads(capsys.readouterr().out)["errors"]
    assert errors["pi-up"].startswith("coralpi_accept_max_eula: must be true to install the max")
    assert "(--runtime max)" in errors["pi-up"]  # the flag the user typed


def test_apply_of_unreachable_hosts_exits_2(tmp_path: Path, closed: Path) -> None:
    proc = coralpi("apply", "-i", str(closed), "--json", "--runs-dir", str(tmp_path / "runs"))
    assert proc.returncode == 2, proc.stderr
    hosts = {h["host"]: h["status"] for h in json.loads(proc.stdout)["hosts"]}
    assert hosts == {"pi1": "unreachable", "pi2": "unreachable"}


def test_lock_of_an_unreachable_host_exits_2(tmp_path: Path, closed: Path) -> None:
    lock = tmp_path / "coralpi.lock"
    proc = coralpi("lock", "-i", str(closed), "--lock", str(lock), "--cache-dir", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert "no facts from pi1, pi2 (unreachable?)" in proc.stderr
    assert not lock.exists()


def test_an_image_for_an_unreachable_host_exits_2(closed: Path) -> None:
    with pytest.raises(HostFailed, match="host pi1 could not be probed"):
        planning.from_inventory(closed, "pi1", {})


# ---------------------------------------------------------------------------------------
# Errors name what was typed


def test_plan_errors_name_the_flags() -> None:
    base = ["plan", "--os", "bookworm", "--arch", "x86_64", "--python", "3.11"]
    for extra, needle in (
        (["--runtime", "max"], "--accept-max-eula must be given to install the max runtime "),
        (["--runtime", "max"], "(--runtime max)"),
        (["--pip-index-url", "ftp://x"], "--pip-index-url ftp://x is not an http(s)://"),
        (["--python", "3.12"], "--opencv apt (the default) needs bookworm's own python 3.11"),
        (["--python", "3.12"], "use --opencv pip"),
    ):
        proc = coralpi(*base, *extra)
        assert proc.returncode == 1 and needle in proc.stderr, proc.stderr
        assert "coralpi_" not in proc.stderr
    armhf = coralpi("plan", "--os", "bookworm", "--arch", "armhf", "--python", "3.11",
                    "--opencv", "pip")  # fmt: skip
    assert "--opencv pip on armv7l needs --pip-index-url" in armhf.stderr, armhf.stderr
    assert "use --opencv apt (Debian" in armhf.stderr


def test_plan_with_an_inventory_names_flags_and_variables_apart(closed: Path) -> None:
    flag = coralpi("plan", "-i", str(closed), "--pip-index-url", "ftp://x")
    assert flag.returncode == 1 and "coralpi: --pip-index-url ftp://x is not" in flag.stderr
    assert "given with -e" not in flag.stderr
    given = coralpi("plan", "-i", str(closed), "-e", "coralpi_pip_index_url=ftp://x")
    assert given.returncode == 1 and "given with -e: coralpi_pip_index_url:" in given.stderr


def test_lock_errors_name_the_flag_or_the_variable(tmp_path: Path) -> None:
    lock = str(tmp_path / "coralpi.lock")
    platform = ["lock", "--platform", "bookworm/armv7l/3.11", "--lock", lock]
    flag = coralpi(*platform, "--opencv", "pip")
    assert flag.returncode == 1, flag.stderr
    assert "--opencv pip on armv7l needs coralpi_pip_index_url" in flag.stderr
    variable = coralpi(*platform, "-e", "coralpi_opencv=pip")
    assert variable.returncode == 1, variable.stderr
    assert "coralpi_opencv: 'pip' on armv7l needs coralpi_pip_index_url" in variable.stderr
    assert _entries(tmp_path) == []  # refused before anything was written


def test_name_flags_rewrites_only_the_flags_given() -> None:
    flags = [
        FlagFor("--runtime", "coralpi_runtime"),
        FlagFor("--accept-max-eula", "coralpi_accept_max_eula", "true"),
        FlagFor("--no-camera", "coralpi_camera", "false"),
    ]
    text = "coralpi_accept_max_eula: must be true to install the max runtime (coralpi_runtime: max)"
    assert name_flags(text, flags, ["coralpi_runtime"]) == (
        "--accept-max-eula must be given to install the max runtime (--runtime max)"
    )
    assert name_flags(text, flags[:1], ["coralpi_runtime"]) == (
        "coralpi_accept_max_eula: must be true to install the max runtime (--runtime max)"
    )
    assert name_flags("camera off (coralpi_camera: false)", flags) == "camera off (--no-camera)"
    assert name_flags("coralpi_runtime_x: 1", flags) == "coralpi_runtime_x: 1"
    assert name_flags("host given with -e: coralpi_runtime: 'mid'", flags, ["x"]) == (
        "--runtime mid"
    )


def test_a_date_from_an_inline_object_is_refused() -> None:
    # YAML reads an unquoted date as a date; Ansible's JSON vars file could not hold it.
    with pytest.raises(ConfigError, match="a date cannot be passed"):
        parse_extra_vars(["{coralpi_x: 2024-01-01}"])


def test_the_default_prober_takes_the_verbosity(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_probe(*args: Any, **kwargs: Any) -> ProbeResult:
        seen.update(kwargs, on_change=args[4])
        return ProbeResult()

    monkeypatch.setattr(options, "probe_hosts", fake_probe)
    options.prober(2)(Path("inv"), Path("run"), None, {})
    assert seen == {"verbosity": 2, "on_change": None}
