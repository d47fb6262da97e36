"""The pull runner (coralpi_pull's coralpi-pull-run, what coralpi-pull.service starts), run
for real with a STAND-IN ``ansible-pull``: a script that records its arguments and prints
what the real one prints (a play recap, the "not changed" line, a failure), so the
runner's decisions and its last result are tested without a host."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "playbooks/roles/coralpi_pull/files/coralpi_pull_run.py"

STANDIN_ANSIBLE_PULL = r'''#!/usr/bin/env python3
"""STAND-IN ansible-pull: records argv, behaves as $STANDIN_PULL says."""
import json, os, sys
with open(os.environ["STANDIN_ARGV"], "a") as fh:
    fh.write(json.dumps(sys.argv[1:]) + "\n")
mode = os.environ["STANDIN_PULL"]
if mode == "converge":
    key = "coralpi_verify_report_dir="
    report_dir = next(a[len(key):] for a in sys.argv if a.startswith(key))
    with open(os.path.join(report_dir, "localhost.json"), "w") as fh:
        json.dump({"result": "pass", "smoke": {"top": [{"label": "parrot"}]}}, fh)
    print("PLAY RECAP ****")
    changed = os.environ.get("STANDIN_CHANGED", "3")
    print("localhost  : ok=40   changed=%s   unreachable=0    failed=0" % changed)
elif mode == "unchanged":
    print("localhost | SUCCESS => {\"changed\": false}")
    print("Repository has not changed, quitting: b'...'")
elif mode == "fail":
    print("TASK [coralpi_mirror : Fetch each file from the mirror] ***")
    print("failed: [localhost] (item=assets/parrot.jpg) => "
          "{\"msg\": \"The checksum did not match\"}")
    print("PLAY RECAP ****")
    print("localhost                  : ok=5   changed=0   unreachable=0    failed=1")
    sys.exit(2)
'''


@pytest.fixture
def pi(tmp_path: Path) -> dict[str, Any]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    standin = venv / "bin" / "ansible-pull"
    standin.write_text(STANDIN_ANSIBLE_PULL)
    standin.chmod(0o755)
    config = {
        "repo_url": "https://user:token@git.example/pull.git",
        "branch": "main",
        "host": "pi9",
        "ansible_venv": str(venv),
        "state_dir": str(tmp_path / "state"),
        "result_path": str(tmp_path / "last-pull.json"),
        "full_interval": 86400,
        "report_url": "",
    }
    return {"config": config, "dir": tmp_path, "argv": tmp_path / "argv.log"}


def run(pi: dict[str, Any], mode: str, *args: str, **env: str) -> dict[str, Any]:
    path = pi["dir"] / "pull.json"
    path.write_text(json.dumps(pi["config"]))
    proc = subprocess.run(
        [sys.executable, str(RUNNER), *args, str(path)],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "STANDIN_PULL": mode, "STANDIN_ARGV": str(pi["argv"]), **env},
    )
    result: dict[str, Any] = json.loads(Path(pi["config"]["result_path"]).read_text())
    result["_rc"] = proc.returncode
    result["_stdout"] = proc.stdout
    return result


def last_argv(pi: dict[str, Any]) -> list[str]:
    argv: list[str] = json.loads(pi["argv"].read_text().splitlines()[-1])
    return argv


def test_first_run_is_full_then_only_if_changed_and_a_failure_is_kept_with_the_last_good(
    pi: dict[str, Any],
) -> None:
    first = run(pi, "converge")
    argv = last_argv(pi)
    assert "--only-if-changed" not in argv and argv[-1] == "local.yml"
    assert argv[:4] == ["-U", "https://user:token@git.example/pull.git", "-C", "main"]
    assert "coralpi_pull_host=pi9" in argv
    assert first["_rc"] == 0 and first["status"] == "ok" and first["full_run"] is True
    assert first["changed"] == 3 and first["verify_result"] == "pass"
    assert first["repo_url"] == "https://***@git.example/pull.git"
    assert "coralpi-pull: ok" in first["_stdout"]

    second = run(pi, "unchanged")
    assert "--only-if-changed" in last_argv(pi)
    assert second["_rc"] == 0 and second["status"] == "unchanged"
    assert second["changed"] is None and second["full_run"] is False
    assert second["verify"] == first["verify"] and second["last_ok"] == first["last_ok"]

    failed = run(pi, "fail")
    assert failed["_rc"] == 1 and failed["status"] == "failed"
    assert "checksum did not match" in failed["message"] and "parrot.jpg" in failed["message"]
    assert failed["last_ok"] == first["last_ok"] and failed["verify_result"] == "pass"
    # After a failure the next run is a full one, even with nothing new in the repository.
    run(pi, "converge", STANDIN_CHANGED="0")
    assert "--only-if-changed" not in last_argv(pi)


def test_a_full_run_is_asked_for_by_flag_by_file_or_by_the_slow_schedule(
    pi: dict[str, Any],
) -> None:
    run(pi, "converge")
    run(pi, "unchanged")
    assert "--only-if-changed" in last_argv(pi)
    run(pi, "converge", "--full")
    assert "--only-if-changed" not in last_argv(pi)
    state = Path(pi["config"]["state_dir"])
    (state / "full-requested").touch()
    run(pi, "converge")
    assert "--only-if-changed" not in last_argv(pi)
    assert not (state / "full-requested").exists()
    pi["config"]["full_interval"] = 0.01  # seconds: long past by now
    got = run(pi, "converge")
    assert got["full_run"] is True and "--only-if-changed" not in last_argv(pi)


class _Receiver(BaseHTTPRequestHandler):
    got: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.got.append((self.path, self.headers.get("Authorization", ""), body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[str, str, bytes]]]]:
    """A minimal HTTP PUT receiver on loopback (what an operator's endpoint stands in for)."""
    _Receiver.got = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", _Receiver.got
    finally:
        server.shutdown()
        server.server_close()


def test_the_last_result_is_put_to_the_operators_url(
    pi: dict[str, Any], receiver: tuple[str, list[tuple[str, str, bytes]]]
) -> None:
    base, got = receiver
    pi["config"]["report_url"] = base.replace("http://", "http://ops:s3cret@") + "/r/{host}.json"
    result = run(pi, "converge")
    assert result["report_put"] == "ok"
    (path, auth, body) = got[0]
    assert path == "/r/pi9.json"
    assert auth == "Basic " + base64.b64encode(b"ops:s3cret").decode()
    sent = json.loads(body)
    assert sent["host"] == "pi9" and sent["status"] == "ok" and sent["verify_result"] == "pass"
    pi["config"]["report_url"] = "http://127.0.0.1:9/{host}"  # nothing listens there
    failed_put = run(pi, "unchanged")
    assert failed_put["status"] == "unchanged" and failed_put["report_put"].startswith("failed")
