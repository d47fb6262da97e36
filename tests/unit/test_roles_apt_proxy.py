"""The apt proxy's user and password: in apt's auth.conf.d (root, 0600), never in apt.conf.d.

What is checked, and how:
- the role coralpi_apt's own proxy tasks (``tasks/proxy.yml`` with the role's defaults), run
  by ansible-playbook with a local connection into a temporary directory (the files are
  root's, so this part needs root): the files, their modes, a second run that changes
  nothing, credentials and proxy going away, and no password in the output even with --diff;
- the role's input checks (its first two tasks, on the role's defaults): values that could
  add a line to apt's files are refused, naming the variable and never showing the password;
- ``provision/image/pi/firstboot.sh``'s ``apt_proxy_setup`` run against a temporary root:
  the same bytes as the role, 0600, the URL it prints has no password;
- the entries read by this machine's apt (a real ``apt-get update`` through a proxy on
  loopback that records the Proxy-Authorization it gets) and by a model of the matching of
  Buster's apt 1.8, which cannot be run here.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ROLE = REPO / "playbooks" / "roles" / "coralpi_apt"
FIRSTBOOT = REPO / "provision" / "image" / "pi" / "firstboot.sh"
VENV_BIN = Path(sys.executable).parent
AUTH_NAME = "coralpi-proxy.conf"
HEADER = (
    "# coralpi: the apt proxy's credentials (inventory variable coralpi_apt_proxy); root only.\n"
    "# apt >= 1.9 takes the first entry (http:// is needed to send them over http),\n"
    "# Buster's apt 1.8 the second (it matches no entry that has a scheme).\n"
)

#: name -> (coralpi_apt_proxy, the URL apt.conf.d gets, the auth.conf.d entries or None)
CASES: dict[str, tuple[str, str, str | None]] = {
    "plain": ("http://10.0.0.1:3142", "http://10.0.0.1:3142", None),
    "creds": (
        "http://coralpi:Secret-b20c5d@10.0.0.1:3142",
        "http://10.0.0.1:3142",
        "machine http://10.0.0.1:3142 login coralpi password Secret-b20c5d\n"
        "machine 10.0.0.1:3142 login coralpi password Secret-b20c5d\n",
    ),
    # Percent-encoding decoded as apt decodes it: %XX only, a '+' stays a '+'.
    "encoded": (
        "http://us%2Ber+x:p%40ss%3Aw+rd%25%22@proxy.example:3128/",
        "http://proxy.example:3128/",
        'machine http://proxy.example:3128 login us+er+x password p@ss:w+rd%"\n'
        'machine proxy.example:3128 login us+er+x password p@ss:w+rd%"\n',
    ),
    # apt splits the user information at the last '@' before the path, as Python does.
    "at_in_password": (
        "http://u:p@ss@proxy:3142/x",
        "http://proxy:3142/x",
        "machine http://proxy:3142 login u password p@ss\n"
        "machine proxy:3142 login u password p@ss\n",
    ),
    "login_only": (
        "http://token7@proxy:3142",
        "http://proxy:3142",
        "machine http://proxy:3142 login token7\nmachine proxy:3142 login token7\n",
    ),
    "ipv6": (
        "http://u:pw6@[fd00::1]:3142",
        "http://[fd00::1]:3142",
        "machine http://fd00::1:3142 login u password pw6\n"
        "machine fd00::1:3142 login u password pw6\n",
    ),
    "no_port": (
        "https://u:pw@proxy.example",
        "https://proxy.example",
        "machine https://proxy.example login u password pw\n"
        "machine proxy.example login u password pw\n",
    ),
    "none": ("", "", None),
}
SECRETS = ("Secret-b20c5d", "p@ss:w+rd", "p%40ss", "token7", "pw6")


def _tool(name: str) -> str:
    path = VENV_BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed in the venv")
    return str(path)


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the role writes root-owned files (owner: root): run as root")


@dataclass
class Run:
    changed: dict[str, int]  # per host, from the recap
    failed: dict[str, str]  # host -> the failed task's message
    output: str


def _playbook(
    tmp: Path, hosts: dict[str, dict[str, Any]], tasks: list[dict[str, Any]], *args: str
) -> Run:
    """Run `tasks` on local "hosts" (one per case)."""
    inventory = {
        "all": {
            "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
            "hosts": hosts,
        }
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump(inventory))
    play = [{"name": "Test", "hosts": "all", "gather_facts": False, "tasks": tasks}]
    (tmp / "play.yml").write_text(yaml.safe_dump(play))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": f"{tmp / 'roles'}:{REPO / 'playbooks' / 'roles'}",
        "ANSIBLE_CALLBACK_RESULT_FORMAT": "json",
        "ANSIBLE_CALLBACK_FORMAT_PRETTY": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_LOCAL_TEMP": str(tmp / "ansible-tmp"),
    }
    proc = subprocess.run(
        [_tool("ansible-playbook"), "-i", str(tmp / "inventory.yml"), str(tmp / "play.yml"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = proc.stdout + proc.stderr
    recap = re.findall(r"(?m)^(\S+)\s+: ok=\d+\s+changed=(\d+)\s+unreachable=(\d+)", proc.stdout)
    assert {h for h, _, _ in recap} == set(hosts), output[-3000:]
    assert all(u == "0" for _, _, u in recap), output[-3000:]
    failed = {
        host: json.loads(res).get("msg", "")
        for host, res in re.findall(r"(?m)^fatal: \[([^\]]+)\]: FAILED! => (\{.*\})$", proc.stdout)
    }
    return Run({h: int(c) for h, c, _ in recap}, failed, output)


PROXY_TASKS = [
    {
        "name": "The role's proxy tasks",
        "ansible.builtin.include_role": {"name": "coralpi_apt", "tasks_from": "proxy.yml"},
    }
]


def _proxy_hosts(tmp: Path, proxies: dict[str, str]) -> dict[str, dict[str, str]]:
    for name in proxies:  # as on a host: apt.conf.d is there, auth.conf.d is made by the role
        (tmp / name / "apt.conf.d").mkdir(parents=True, exist_ok=True)
    return {
        name: {
            "coralpi_apt_proxy": proxy,
            "coralpi_apt_proxy_conf_path": str(tmp / name / "apt.conf.d" / "01coralpi-proxy"),
            "coralpi_apt_proxy_auth_path": str(tmp / name / "auth.conf.d" / AUTH_NAME),
        }
        for name, proxy in proxies.items()
    }


def _auth_file(expected: str) -> str:
    return HEADER + expected


def _check_files(tmp: Path, name: str, url: str, entries: str | None) -> None:
    conf = tmp / name / "apt.conf.d" / "01coralpi-proxy"
    auth = tmp / name / "auth.conf.d" / AUTH_NAME
    if url:
        text = conf.read_text()
        assert f'Acquire::http::Proxy "{url}";\n' in text, text
        assert stat.S_IMODE(conf.stat().st_mode) == 0o644
        assert "@" not in text.splitlines()[-1], text
    else:
        assert not conf.exists()
    if entries is None:
        assert not auth.exists(), name
        return
    assert auth.read_text() == _auth_file(entries), name
    st = auth.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o600, 0, 0), name


def test_the_role_writes_the_url_and_the_credentials_apart_and_converges(tmp_path: Path) -> None:
    _needs_root()
    proxies = {name: case[0] for name, case in CASES.items()}
    first = _playbook(tmp_path, _proxy_hosts(tmp_path, proxies), PROXY_TASKS, "--diff", "-v")
    assert not first.failed, first.output[-3000:]
    for name, (_, url, entries) in CASES.items():
        _check_files(tmp_path, name, url, entries)
    for secret in SECRETS:
        assert secret not in first.output, f"{secret} in ansible-playbook's output"

    # A second run changes nothing.
    again = _playbook(tmp_path, _proxy_hosts(tmp_path, proxies), PROXY_TASKS)
    assert again.changed == dict.fromkeys(CASES, 0), again.output[-3000:]

    # Credentials, then the proxy, go away: so do their files.
    later = {**proxies, "creds": "http://10.0.0.1:3142", "encoded": ""}
    last = _playbook(tmp_path, _proxy_hosts(tmp_path, later), PROXY_TASKS, "--diff", "-v")
    assert not last.failed, last.output[-3000:]
    _check_files(tmp_path, "creds", "http://10.0.0.1:3142", None)
    _check_files(tmp_path, "encoded", "", None)
    assert last.changed["creds"] > 0 and last.changed["plain"] == 0
    assert "Secret-b20c5d" not in last.output


def test_the_task_writing_the_credentials_logs_and_diffs_nothing() -> None:
    tasks = yaml.safe_load((ROLE / "tasks" / "proxy.yml").read_text())
    writers = [
        t
        for t in tasks
        if any(
            "proxy" in str((t.get(m) or {}).get("src", ""))
            for m in ("ansible.builtin.template", "ansible.builtin.copy")
        )
    ]
    assert len(writers) == 2, writers  # the URL and the credentials
    for task in writers:
        assert task.get("diff") is False, task["name"]  # an older file may hold the password
    auth = [t for t in writers if t["ansible.builtin.template"]["src"] == "proxy-auth.conf.j2"]
    assert len(auth) == 1 and auth[0].get("no_log") is True
    assert auth[0]["ansible.builtin.template"]["mode"] == "0600"


def _assert_role(tmp: Path) -> None:
    """A role holding the first two tasks of coralpi_apt (its input checks) over the real
    defaults, so nothing but the checks runs."""
    role = tmp / "roles" / "coralpi_apt_checks"
    (role / "tasks").mkdir(parents=True)
    (role / "defaults").mkdir()
    (role / "defaults" / "main.yml").write_text((ROLE / "defaults" / "main.yml").read_text())
    tasks = yaml.safe_load((ROLE / "tasks" / "main.yml").read_text())
    assert all("ansible.builtin.assert" in t for t in tasks[:2]), "the first two tasks are checks"
    (role / "tasks" / "main.yml").write_text(yaml.safe_dump(tasks[:2]))


CHECK_CASES: dict[str, tuple[dict[str, Any], str | None]] = {
    "good": ({"coralpi_apt_proxy": "http://u:pa%2Fss@10.0.0.1:3142"}, None),
    "newline_in_repo_url": (
        {"coralpi_coral_repo_url": "https://mirror.example/apt\nSigned-By: /tmp/k.gpg"},
        "coralpi_apt: refuses the value of coralpi_coral_repo_url",
    ),
    "space_in_repo_url": (
        {"coralpi_coral_repo_url": "https://mirror.example/a b"},
        "coralpi_apt: refuses the value of coralpi_coral_repo_url",
    ),
    "quote_in_proxy": (
        {"coralpi_apt_proxy": 'http://u:Hidden"x@10.0.0.1:3142'},
        "coralpi_apt: refuses the value of coralpi_apt_proxy",
    ),
    "newline_in_suite": (
        {"coralpi_apt_coral_suite": "stable\nTrusted: yes"},
        "coralpi_apt: refuses the value of coralpi_apt_coral_suite",
    ),
    "space_in_component": (
        {"coralpi_apt_coral_components": ["main", "x y"]},
        "coralpi_apt: refuses the value of coralpi_apt_coral_components",
    ),
    "decoded_space_in_password": (
        {"coralpi_apt_proxy": "http://u:Hidden%20pw@10.0.0.1:3142"},
        "cannot hold it",
    ),
    "decoded_newline_in_login": (
        {"coralpi_apt_proxy": "http://Hidden%0Amachine@10.0.0.1:3142"},
        "cannot hold it",
    ),
    "password_machine": ({"coralpi_apt_proxy": "http://u:machine@10.0.0.1:3142"}, "cannot hold it"),
    "query_in_host": (
        {"coralpi_apt_proxy": "http://u:Hidden@10.0.0.1:3142?x"},
        "coralpi_apt_proxy empty or",
    ),
}


def test_the_role_refuses_values_that_could_add_a_line_naming_them(tmp_path: Path) -> None:
    _assert_role(tmp_path)
    hosts = {
        name: {"coralpi_coral_source_enabled": False, **values}
        for name, (values, _) in CHECK_CASES.items()
    }
    tasks = [{"name": "Checks", "ansible.builtin.include_role": {"name": "coralpi_apt_checks"}}]
    run = _playbook(tmp_path, hosts, tasks)
    failed, output = run.failed, run.output
    for name, (_, message) in CHECK_CASES.items():
        if message is None:
            assert name not in failed, failed.get(name)
        else:
            assert name in failed, f"{name} was not refused"
            assert message in failed[name], (name, failed[name])
    assert "Hidden" not in output, "a password reached ansible-playbook's output"


def _firstboot_setup(root: Path, proxy: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", "-c", '. "$1" && apt_proxy_setup "$2"', "sh", str(FIRSTBOOT), str(root)],
        env={**os.environ, "CORALPI_FIRSTBOOT_FUNCTIONS": "1", "CORALPI_APT_PROXY": proxy},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_firstboot_sh_parses() -> None:
    for shell in ("sh", "bash"):
        if shutil.which(shell):
            proc = subprocess.run([shell, "-n", str(FIRSTBOOT)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr


def test_firstboot_reads_the_proxy_only_to_hand_it_to_apt_proxy_setup() -> None:
    """The proxy URL is never put on a command line or into a world-readable file: the
    script reads it in one place, the environment of apt_proxy_setup's python3."""
    lines = [ln for ln in FIRSTBOOT.read_text().splitlines() if not ln.lstrip().startswith("#")]
    uses = [ln.strip() for ln in lines if "CORALPI_APT_PROXY" in ln]
    assert uses == [
        "CORALPI_APT_PROXY=${CORALPI_APT_PROXY:-} python3 - \"${1:-}\" <<'PY'",
        'proxy = os.environ.get("CORALPI_APT_PROXY", "")',
    ], uses


@pytest.mark.parametrize("name", list(CASES))
def test_firstboot_writes_the_same_file_0600_and_prints_the_url_without_password(
    tmp_path: Path, name: str
) -> None:
    proxy, url, entries = CASES[name]
    proc = _firstboot_setup(tmp_path, proxy)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (url + "\n" if url else "")
    auth = tmp_path / "etc" / "apt" / "auth.conf.d" / AUTH_NAME
    if entries is None:
        assert not auth.exists()
        return
    assert auth.read_text() == _auth_file(entries)
    st = auth.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (0, 0)
    mtime = st.st_mtime_ns
    assert _firstboot_setup(tmp_path, proxy).returncode == 0
    assert auth.stat().st_mtime_ns == mtime, "an unchanged file is not written again"
    # The credentials go away: so does the file (an earlier one with a loose mode is fixed
    # on the way, too).
    auth.chmod(0o644)
    assert _firstboot_setup(tmp_path, proxy).returncode == 0
    assert stat.S_IMODE(auth.stat().st_mode) == 0o600
    assert _firstboot_setup(tmp_path, url).returncode == 0
    assert not auth.exists()


PROXY_CHECKS = {
    name: (str(values["coralpi_apt_proxy"]), message is not None)
    for name, (values, message) in CHECK_CASES.items()
    if "coralpi_apt_proxy" in values
}


@pytest.mark.parametrize("name", list(PROXY_CHECKS))
def test_firstboot_refuses_the_proxies_the_role_refuses(tmp_path: Path, name: str) -> None:
    proxy, refused = PROXY_CHECKS[name]
    proc = _firstboot_setup(tmp_path, proxy)
    assert (proc.returncode != 0) == refused, proc.stderr
    assert "Hidden" not in proc.stdout + proc.stderr
    if refused:
        assert proc.stdout == ""
        assert not (tmp_path / "etc" / "apt" / "auth.conf.d" / AUTH_NAME).exists()


# --- what apt makes of the entries ---------------------------------------------------------


def _apt_match(
    text: str, access: str, host: str, port: int, path: str, scheme_aware: bool
) -> tuple[str, str, list[str]]:
    """A model of apt's MaybeAddAuth (apt-pkg/contrib/netrc.cc) for one URI: 1.8 (Buster,
    ``scheme_aware=False``) and 2.x/3.x (Bullseye on). The login, password and the warnings."""
    lookfor = f"{host}:{port}{path}" if port else f"{host}{path}"
    tokens = text.split()
    state, login, password, warnings = "NO", "", "", []
    for token in tokens:
        if state == "NO":
            state = "MACHINE" if token == "machine" else "NO"
        elif state == "MACHINE":
            with_scheme = "://" in token
            if scheme_aware and with_scheme:
                if not token.startswith(access + "://"):
                    state = "NO"
                    continue
                token = token[len(access) + 3 :]
            if "/" not in token:
                good = (port and host == token) or lookfor[: len(lookfor) - len(path)] == token
            else:
                good = lookfor.startswith(token)
            state = "GOOD" if good else "NO"
            if state == "GOOD" and scheme_aware and not with_scheme and access not in ("https",):
                warnings.append(f"Credentials for {token} match, but the protocol is not encrypted")
                state = "NO"
        elif state == "GOOD":
            if token == "login":
                state = "LOGIN"
            elif token == "password":
                state = "PASSWORD"
            elif token == "machine":
                return login, password, warnings
        elif state == "LOGIN":
            login, state = token, "GOOD"
        elif state == "PASSWORD":
            password, state = token, "GOOD"
    return login, password, warnings


@pytest.mark.parametrize("scheme_aware", [False, True], ids=["apt-1.8", "apt-2.x"])
def test_both_apt_generations_find_the_credentials_for_the_proxy(scheme_aware: bool) -> None:
    text = _auth_file(str(CASES["creds"][2]))
    assert _apt_match(text, "http", "10.0.0.1", 3142, "/", scheme_aware) == (
        "coralpi",
        "Secret-b20c5d",
        [],
    )
    # ... and give them to nothing else.
    for host, port in (("deb.debian.org", 0), ("10.0.0.1", 80), ("10.0.0.11", 3142)):
        assert _apt_match(text, "http", host, port, "/debian/", scheme_aware)[:2] == ("", "")


class _RecordingProxy(BaseHTTPRequestHandler):
    seen: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Proxy-Authorization"))
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def recording_proxy() -> Iterator[tuple[str, list[str | None]]]:
    _RecordingProxy.seen = []
    server = HTTPServer(("127.0.0.1", 0), _RecordingProxy)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", _RecordingProxy.seen
    finally:
        server.shutdown()
        server.server_close()


def test_this_machines_apt_sends_the_credentials_from_auth_conf_d_to_the_proxy(
    tmp_path: Path, recording_proxy: tuple[str, list[str | None]]
) -> None:
    if not shutil.which("apt-get"):
        pytest.skip("no apt-get on this machine")
    hostport, seen = recording_proxy
    proxy = f"http://us%2Ber:p%40ss%22w@{hostport}"
    proc = _firstboot_setup(tmp_path, proxy)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "lists" / "partial").mkdir(parents=True)
    sources = tmp_path / "sources.list"
    # Never reached: the proxy on loopback answers every request itself (404).
    sources.write_text("deb http://deb.example.invalid/debian bookworm main\n")
    options = {
        "Dir::Etc::SourceList": str(sources),
        "Dir::Etc::SourceParts": "-",
        "Dir::Etc::Parts": "-",
        "Dir::State::Lists": str(tmp_path / "lists"),
        "Dir::Cache::pkgcache": "",
        "Dir::Cache::srcpkgcache": "",
        "Dir::Etc::netrc": "/dev/null",
        "Dir::Etc::netrcparts": str(tmp_path / "etc" / "apt" / "auth.conf.d"),
        "Acquire::http::Proxy": proc.stdout.strip(),
        "Acquire::Retries": "0",
        "Debug::NoLocking": "1",
    }
    argv = ["apt-get", "update"] + [a for k, v in options.items() for a in ("-o", f"{k}={v}")]
    update = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert seen, update.stdout + update.stderr
    assert {base64.b64decode(h.split()[1]).decode() if h else None for h in seen} == {
        'us+er:p@ss"w'
    }, update.stderr
    assert not re.search(r"(?m)^W: .*(Credentials|auth\.conf)", update.stderr), update.stderr
