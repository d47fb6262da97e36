"""Command-line options shared by the fleet commands (apply, verify)."""

from __future__ import annotations

import argparse
import signal
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml

from provision.commands import options
from provision.errors import ConfigError, CoralpiError, HostFailed, Interrupted, signal_of
from provision.fleet.report import FleetReport, render
from provision.fleet.run import FleetOptions, last_failed_hosts, run_fleet
from provision.redaction import redact
from provision.tools import playbook, shared

#: Ansible's own tags: `always` tasks (taking the plan, gathering facts) must run whatever
#: is selected, and `never` ones never; neither is a part of the job a user can pick.
_SPECIAL_TAGS = frozenset({"always", "never"})


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_inventory(
        parser,
        "Ansible inventory (default: inventory/localhost.yml, this machine)",
        default=options.DEFAULT_INVENTORY,
    )
    options.add_limit(parser, "only hosts matching this Ansible pattern")
    options.add_extra_vars(
        parser,
        "set variables for every host, as ansible-playbook takes them: NAME=VALUE, @FILE "
        "(YAML or JSON) or a JSON object (repeatable)",
    )
    options.add_json(parser, "print the fleet report as JSON")
    parser.add_argument(
        "--retry-failed",
        action="store_true",
        help="only the hosts that failed in the last run of this command",
    )
    options.add_list_hosts(parser)
    options.add_verbosity(parser)
    parser.add_argument(
        "--forks",
        type=options.positive_int,
        default=20,
        metavar="N",
        help="hosts Ansible works on at once (default: %(default)s)",
    )
    options.add_runs_dir(parser)
    options.add_cache_dir(parser)
    options.add_lock(
        parser, "lock file pinning every artifact (default: ./coralpi.lock when it exists)"
    )


def add_tag_arguments(parser: argparse.ArgumentParser) -> None:
    """``--tags`` / ``--skip-tags``: parts of the job by role (repeatable, comma lists)."""
    for flag, what in (("--tags", "only"), ("--skip-tags", "all but")):
        parser.add_argument(
            flag,
            action="append",
            default=[],
            metavar="TAG[,TAG...]",
            help=f"run {what} the roles with these tags (one per role: coralpi_apt, "
            "coralpi_edgetpu, ...; repeatable)",
        )


def _split_tags(items: Iterable[str]) -> tuple[str, ...]:
    tags: list[str] = []
    for item in items:
        tags += [t.strip() for t in item.split(",") if t.strip() and t.strip() not in tags]
    return tuple(tags)


# ---------------------------------------------------------------------------------------
# The tags the playbooks define (read from their YAML, as ansible-playbook --list-tags would)

_TASK_LISTS = ("pre_tasks", "tasks", "post_tasks", "handlers", "block", "rescue", "always")
_ROLE_TASKS = ("include_role", "import_role")
_TASK_FILES = ("include_tasks", "import_tasks")


def _module(item: dict[str, Any], names: tuple[str, ...]) -> Any:
    """The argument of the first of ``names`` (short or ``ansible.builtin.``) in a task."""
    for name in names:
        for key in (name, f"ansible.builtin.{name}"):
            if key in item:
                return item[key]
    return None


def _tags_of(item: dict[str, Any]) -> Iterator[str]:
    value = item.get("tags")
    if isinstance(value, str):
        value = value.split(",")
    if isinstance(value, list):
        for tag in value:
            text = str(tag).strip()
            if text and "{{" not in text:
                yield text


class _Tags:
    """Reads playbooks, task files and roles for their tags (each file once)."""

    def __init__(self, roles_dir: Path) -> None:
        self.roles_dir = roles_dir
        self.seen: set[Path] = set()
        self.tags: set[str] = set()

    def file(self, path: Path) -> None:
        path = path.resolve()
        if path in self.seen or not path.is_file():
            return
        self.seen.add(path)
        self.items(yaml.safe_load(path.read_text(encoding="utf-8")), path.parent)

    def role(self, name: str) -> None:
        for tasks in sorted((self.roles_dir / name / "tasks").glob("**/*.y*ml")):
            self.file(tasks)

    def items(self, items: Any, here: Path) -> None:
        """A list of plays, tasks or blocks (``here``: where relative file names start)."""
        for item in items if isinstance(items, list) else []:
            if not isinstance(item, dict):
                continue
            self.tags.update(_tags_of(item))
            imported = _module(item, ("import_playbook",))
            if isinstance(imported, str) and "{{" not in imported:
                self.file(here / imported)
            included = _module(item, _TASK_FILES)
            included = included.get("file") if isinstance(included, dict) else included
            if isinstance(included, str) and "{{" not in included:
                self.file(here / included)
            role = _module(item, _ROLE_TASKS)
            if isinstance(role, dict) and isinstance(role.get("name"), str):
                self.role(role["name"])
            for entry in item.get("roles") or []:
                name = entry.get("role") or entry.get("name") if isinstance(entry, dict) else entry
                if isinstance(entry, dict):
                    self.tags.update(_tags_of(entry))
                if isinstance(name, str):
                    self.role(name)
            for key in _TASK_LISTS:
                self.items(item.get(key), here)


def playbook_tags(book: Path, roles_dir: Path | None = None) -> set[str]:
    """Every tag ``book`` can select, as ``ansible-playbook --list-tags`` lists them: on its
    plays, role entries and tasks, in what it imports or includes by a literal name, and
    on the tasks of the roles it runs (in ``roles_dir``); Ansible's ``always`` and
    ``never`` are not among them."""
    reader = _Tags(roles_dir or book.parent / "roles")
    reader.file(book)
    return reader.tags - _SPECIAL_TAGS


def check_tags(book: str, tags: Iterable[str], skip_tags: Iterable[str]) -> None:
    """Refuse a tag the playbook does not define, naming the ones it does (before any host
    is touched)."""
    wanted = [("--tags", t) for t in tags] + [("--skip-tags", t) for t in skip_tags]
    if not wanted:
        return
    known = playbook_tags(playbook(book), shared("playbooks", "roles"))
    unknown = [(flag, tag) for flag, tag in wanted if tag not in known]
    if unknown:
        given = ", ".join(f"{flag} {tag}" for flag, tag in unknown)
        offer = (
            f"known tags: {', '.join(sorted(known))}"
            if known
            else "it defines no tags (each role's inclusion in playbooks/provision.yml "
            "needs its role name as a tag)"
        )
        raise ConfigError(f"{given}: not a tag of playbooks/{book}; {offer}")


# ---------------------------------------------------------------------------------------


def options_from_args(args: argparse.Namespace) -> FleetOptions:
    return FleetOptions(
        inventory=args.inventory,
        limit=args.limit,
        check=getattr(args, "check", False),
        diff=getattr(args, "diff", False),
        extra_vars=options.parse_extra_vars(args.extra_vars),
        runs_root=args.runs_dir,
        cache_dir=args.cache_dir,
        retry_failed=args.retry_failed,
        lock_file=args.lock or (options.DEFAULT_LOCK if options.DEFAULT_LOCK.exists() else None),
        verbosity=args.verbosity,
        forks=args.forks,
        tags=_split_tags(getattr(args, "tags", ())),
        skip_tags=_split_tags(getattr(args, "skip_tags", ())),
    )


def playbook_of(command: str, fleet: FleetOptions) -> str:
    """The playbook `apply` or `verify` runs (as fleet.run picks it)."""
    if command == "apply":
        return "provision.yml" if fleet.check else "site.yml"
    return "verify.yml"


def interrupted_message(report: FleetReport) -> str:
    """What the user reads after stopping a run: what state the hosts are in, what to do."""
    stopped = [n for n, h in sorted(report.hosts.items()) if h.status == "interrupted"]
    how = "Ctrl-C" if report.interrupted == "SIGINT" else report.interrupted
    return (
        f"coralpi {report.command}: interrupted ({how}); ansible-playbook was stopped.\n"
        f"  Unfinished hosts: {', '.join(stopped) or 'none'} (marked 'interrupted' in the "
        "report; they may be part-way through a task).\n"
        f"  Run `coralpi {report.command}` again (or with --retry-failed) to converge them.\n"
        f"  Run directory (logs, event stream, report.json): {report.run_dir}"
    )


def list_fleet_hosts(command: str, fleet: FleetOptions, as_json: bool) -> int:
    """--list-hosts: the hosts a run would take (--retry-failed's too); nothing touched."""
    limit = fleet.limit
    if fleet.retry_failed:
        failed = last_failed_hosts(command, fleet.runs_root)
        if not failed:
            raise ConfigError(f"--retry-failed: the last `coralpi {command}` had no failed host")
        limit = ",".join(failed)
    options.list_hosts(fleet.inventory, limit, as_json)
    return 0


def show_ansible_output(report: FleetReport, command: str) -> None:
    """-v: Ansible's own output of the run's playbooks (probe, then the command's)."""
    for ident in ("probe", command):
        options.print_ansible_output(
            report.run_dir / "artifacts" / ident / "stdout", f"ansible-playbook ({ident})"
        )


def run_fleet_command(command: str, args: argparse.Namespace) -> int:
    """Run `apply` or `verify` and print the report; 0 when every host is good, else
    HostFailed (exit 2) or Interrupted (130 for Ctrl-C). Secrets in URLs never reach the
    terminal."""
    fleet = options_from_args(args)
    if args.list_hosts:
        return list_fleet_hosts(command, fleet, args.json)
    check_tags(playbook_of(command, fleet), fleet.tags, fleet.skip_tags)
    try:
        report = run_fleet(command, fleet)
    except KeyboardInterrupt as exc:
        raise Interrupted(
            f"coralpi {command}: interrupted before any host was touched",
            signal_of(exc),
            bare=True,
        ) from None
    except CoralpiError as exc:
        exc.message = redact(exc.message)
        raise
    if fleet.verbosity:
        show_ansible_output(report, command)
    render(report, as_json=args.json)
    if report.interrupted:
        raise Interrupted(
            interrupted_message(report), signal.Signals[report.interrupted].value, bare=True
        )
    if report.failed:
        raise HostFailed("")  # the report names the failed hosts
    return 0
