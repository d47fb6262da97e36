#!/usr/bin/python3
"""One pull of this host: what coralpi-pull.service starts (installed by coralpi_pull).

Runs ``ansible-pull`` against the pull repository with ``--only-if-changed``, except when a
full run is due (none yet, the last one failed, or the last full run is older than
``full_interval`` seconds, or ``--full`` is given, or the file ``<state_dir>/full-requested``
exists, e.g. touched by an operator): then the playbook runs even when the repository did
not change, so drift on the host is put right. Its output goes to stdout
(the journal) and to ``<state_dir>/last-pull.log``. The result is written to
``result_path`` as JSON and, with ``report_url``, PUT there::

    {"host", "status": "ok" | "unchanged" | "failed", "started_at", "finished_at",
     "seconds", "full_run", "repo_url", "branch", "commit", "previous_commit", "rc",
     "changed", "failed_count", "message", "verify", "verify_result", "last_ok",
     "last_full_run_epoch", "report_put"}

A failed run changes nothing the host had before it failed (the roles are idempotent and
the mirror's files are checked before they are used); ``last_ok`` says which commit the
host last converged to. Stdlib only: it runs on the host's own /usr/bin/python3.
"""

import base64
import fcntl
import json
import os
import re
import subprocess
import sys
import time
import urllib.parse
import urllib.request

RECAP = re.compile(
    r"^localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M
)
UNCHANGED = "Repository has not changed, quitting"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: str, data: dict) -> None:
    tmp = path + ".part"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def _without_login(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + host))


def _commit(checkout: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", checkout, "rev-parse", "HEAD"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            check=False,
        )
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _message(lines: list) -> str:
    """The last error ansible-pull or the playbook reported (a role's own refusal comes
    after the failure it names), else the output's end."""
    errors = [
        line.strip()
        for line in lines
        if line.strip().startswith(("fatal:", "failed:", "ERROR!", "[ERROR]")) or "FAILED!" in line
    ]
    if errors:
        return errors[-1][:2000]
    return " | ".join(x.strip() for x in lines[-5:] if x.strip())[:2000]


def _put(url: str, host: str, data: dict) -> str:
    """PUT the result to ``url`` ({host} replaced); 'ok' or why not."""
    target = url.replace("{host}", urllib.parse.quote(host, safe=""))
    parts = urllib.parse.urlsplit(target)
    headers = {"Content-Type": "application/json"}
    if parts.username is not None:
        login = "{}:{}".format(
            urllib.parse.unquote(parts.username),
            urllib.parse.unquote(parts.password or ""),
        )
        headers["Authorization"] = "Basic " + base64.b64encode(login.encode()).decode()
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        target = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    body = json.dumps(data, indent=2, sort_keys=True).encode()
    request = urllib.request.Request(target, data=body, headers=headers, method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return "ok" if 200 <= reply.status < 300 else f"HTTP {reply.status}"
    except Exception as exc:
        return f"failed: {exc}"


def run(config: dict, force_full: bool) -> dict:
    state_dir = config["state_dir"]
    checkout = os.path.join(state_dir, "checkout")
    verify_dir = os.path.join(state_dir, "verify")
    report = os.path.join(verify_dir, "localhost.json")
    previous = _read_json(config["result_path"])
    started = time.time()
    last_full = float(previous.get("last_full_run_epoch") or 0)
    requested = os.path.join(state_dir, "full-requested")
    force_full = force_full or os.path.exists(requested)
    if os.path.exists(requested):
        os.unlink(requested)
    full = (
        force_full
        or previous.get("status") in (None, "failed")
        or started - last_full >= float(config["full_interval"])
    )
    os.makedirs(verify_dir, exist_ok=True)
    if os.path.exists(report):
        os.unlink(report)
    previous_commit = _commit(checkout)
    argv = [
        os.path.join(config["ansible_venv"], "bin", "ansible-pull"),
        "-U",
        config["repo_url"],
        "-C",
        config["branch"],
        "-d",
        checkout,
        "--clean",
        "-e",
        "coralpi_pull_host={}".format(config["host"]),
        "-e",
        f"coralpi_verify_report_dir={verify_dir}",
    ]
    if not full:
        argv.append("--only-if-changed")
    argv.append("local.yml")
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0", PYTHONUNBUFFERED="1")
    lines = []
    print("coralpi-pull: {} run of {}".format("full" if full else "if-changed", config["branch"]))
    sys.stdout.flush()
    with open(os.path.join(state_dir, "last-pull.log"), "w", encoding="utf-8") as log:
        try:
            proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                universal_newlines=True,
                env=env,
                cwd=state_dir,
            )
        except OSError as exc:
            lines.append(f"ERROR! cannot start ansible-pull: {exc}")
            rc = 127
        else:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                log.write(line)
                sys.stdout.write(line)
            rc = proc.wait()
        sys.stdout.flush()
    text = "\n".join(lines)
    recap = RECAP.findall(text)
    changed = sum(int(r[1]) for r in recap)
    failed = sum(int(r[2]) + int(r[3]) for r in recap)
    unchanged = rc == 0 and UNCHANGED in text
    if rc != 0 or failed:
        status = "failed"
    elif unchanged:
        status = "unchanged"
    else:
        status = "ok"
    verify = _read_json(report) or None
    result = {
        "host": config["host"],
        "status": status,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "finished_at": _now(),
        "seconds": round(time.time() - started, 1),
        "full_run": full,
        "repo_url": _without_login(config["repo_url"]),
        "branch": config["branch"],
        "commit": _commit(checkout),
        "previous_commit": previous_commit,
        "rc": rc,
        "changed": changed if recap else None,
        "failed_count": failed,
        "message": _message(lines) if status == "failed" else "",
        "verify": verify if status == "ok" else previous.get("verify"),
        "verify_result": (verify or {}).get("result")
        if status == "ok"
        else previous.get("verify_result"),
        "last_ok": previous.get("last_ok"),
        "last_full_run_epoch": started if full and status == "ok" else last_full,
        "report_put": None,
    }
    if status == "failed":
        result["verify_from"] = "an earlier run (this one failed)"
    if status == "ok":
        result["last_ok"] = {
            "commit": result["commit"],
            "at": result["finished_at"],
            "verify_result": result["verify_result"],
        }
    return result


def main(argv: list) -> int:
    args = [a for a in argv[1:] if a != "--full"]
    if len(args) != 1:
        print("usage: coralpi-pull-run [--full] CONFIG.json", file=sys.stderr)
        return 1
    config = _read_json(args[0])
    os.makedirs(config["state_dir"], exist_ok=True)
    # One run at a time (the timer's and one started by hand or by bootstrap.sh): the
    # second waits, then sees the first one's result.
    with open(os.path.join(config["state_dir"], "run.lock"), "w", encoding="utf-8") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = run(config, "--full" in argv[1:])
        _write_json(config["result_path"], result)
        if config.get("report_url"):
            result["report_put"] = _put(config["report_url"], config["host"], result)
            _write_json(config["result_path"], result)
    print(
        "coralpi-pull: {} (commit {}, changed {}){}".format(
            result["status"],
            result["commit"][:12] or "none",
            result["changed"],
            ": " + result["message"] if result["message"] else "",
        )
    )
    return 1 if result["status"] == "failed" else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
