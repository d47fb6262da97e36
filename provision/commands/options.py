"""Command-line options several commands share, each defined once (names, defaults, help).

``-i/--inventory``, ``-l/--limit``, ``-e/--extra-vars``, ``-v``, ``--list-hosts``,
``--lock``, ``--cache-dir``, ``--runs-dir`` and ``--json``; ``-e``'s one parser; and how a
message names a value the user gave with a flag (:func:`name_flags`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import yaml

from provision.artifacts.lockfile import DEFAULT_LOCK_NAME
from provision.errors import ConfigError
from provision.fleet.progress import live_progress
from provision.planning.inventory import load_inventory
from provision.planning.probe import ProbeResult, probe_hosts
from provision.planning.service import Prober
from provision.planning.variables import BY_NAME
from provision.tools import share_root

DEFAULT_INVENTORY = share_root() / "inventory" / "localhost.yml"
DEFAULT_LOCK = Path(DEFAULT_LOCK_NAME)

#: What ``-e`` takes, as ansible-playbook does.
EXTRA_VARS_FORMS = "VAR=VALUE, @FILE (YAML or JSON) or a JSON object"


def add_inventory(parser: Any, help: str, *, default: Path | None = None) -> None:
    """``-i/--inventory`` (``parser`` may be a mutually exclusive group)."""
    parser.add_argument("-i", "--inventory", type=Path, default=default, help=help)


def add_limit(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("-l", "--limit", help=help)


def add_extra_vars(parser: argparse.ArgumentParser, help: str) -> None:
    """``-e NAME=VALUE``, ``-e @FILE``, ``-e '{"NAME": VALUE}'`` (repeatable; ``--var`` is
    its older spelling)."""
    parser.add_argument(
        "-e",
        "--extra-vars",
        "--var",
        dest="extra_vars",
        action="append",
        default=[],
        metavar="NAME=VALUE|@FILE|JSON",
        help=help,
    )


def add_verbosity(parser: argparse.ArgumentParser, what: str = "Ansible's") -> None:
    """``-v``/``-vv``/``-vvv`` (a count), passed on to ansible-playbook."""
    parser.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="count",
        default=0,
        help=f"{what} verbosity, as ansible-playbook takes it (-vvv: connection debugging); "
        "Ansible's output is printed on stderr after each playbook",
    )


def add_list_hosts(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--list-hosts",
        action="store_true",
        help="print the hosts the inventory and --limit select, touch nothing",
    )


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def add_lock(parser: argparse.ArgumentParser, help: str, *, default: Path | None = None) -> None:
    parser.add_argument("--lock", type=Path, default=default, metavar="FILE", help=help)


def add_cache_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="artifact cache (default: $CORALPI_CACHE_DIR or $XDG_CACHE_HOME/coralpi)",
    )


def add_runs_dir(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--runs-dir",
        type=Path,
        metavar="DIR",
        help="where run directories go (default: $XDG_STATE_HOME/coralpi/runs)",
    )


def add_json(parser: argparse.ArgumentParser, help: str = "print the result as JSON") -> None:
    parser.add_argument("--json", action="store_true", help=help)


# ---------------------------------------------------------------------------------------
# -e


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, without echoing the text (it may hold a password)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {exc.problem}"
    return type(exc).__name__


def _load_mapping(text: str, where: str) -> dict[Any, Any]:
    """A YAML or JSON mapping (JSON first: its errors are the clearer ones for JSON)."""
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as json_exc:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            if text.lstrip().startswith(("{", "[")):
                problem = f"line {json_exc.lineno}, column {json_exc.colno}: {json_exc.msg}"
            else:
                problem = _yaml_problem(exc)
            raise ConfigError(f"{where}: not a YAML or JSON object ({problem})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: expected an object of NAME: VALUE pairs, not a {type(data).__name__}"
        )
    return data


def _vars_file(path: str, where: str) -> dict[Any, Any]:
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{where}: cannot be read ({exc})") from None
    return _load_mapping(text, where)


def parse_extra_vars(items: Sequence[str], *, coralpi_only: bool = False) -> dict[str, Any]:
    """``-e`` values as ansible-playbook takes them: ``NAME=VALUE`` (the value a string),
    ``@FILE`` (a YAML or JSON file) or an inline JSON (or YAML) object; later ones win.
    Anything else is a usage error naming the item (a file or object by where it is, never
    by its contents). With ``coralpi_only`` (commands that pass nothing to Ansible) only
    ``coralpi_*`` names. The values are checked later, like the inventory's."""
    result: dict[str, Any] = {}
    for item in items:
        if item.startswith("@"):
            where = f"-e {item}"
            given = _vars_file(item[1:], where)
        elif item.lstrip().startswith(("{", "[")):
            where = "-e JSON"
            given = _load_mapping(item, where)
        else:
            name, sep, value = item.partition("=")
            name = name.strip()
            if not sep or not name:
                raise ConfigError(f"-e {item!r}: expected {EXTRA_VARS_FORMS}")
            if coralpi_only and not name.startswith("coralpi_"):
                raise ConfigError(f"-e {item!r}: expected coralpi_NAME=VALUE")
            result[name] = value
            continue
        for name, value in given.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{where}: {name!r} is not a variable name")
            if coralpi_only and not name.startswith("coralpi_"):
                raise ConfigError(f"{where}: {name}: only coralpi_* settings are taken here")
            try:
                json.dumps(value)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"{where}: {name}: a {type(value).__name__} cannot be passed to Ansible "
                    "(quote it to make it a string)"
                ) from None
            result[name.strip()] = value
    return result


# ---------------------------------------------------------------------------------------
# Messages that name the flag a value came from


@dataclass(frozen=True)
class FlagFor:
    """A command-line flag that sets an inventory variable. ``const``: what a flag without
    a value stands for (``--no-camera``: ``false``)."""

    flag: str
    variable: str
    const: str | None = None


def name_flags(text: str, flags: Iterable[FlagFor], given: Iterable[str] = ()) -> str:
    """``text`` with each of ``flags``' variables named as its flag: the user gave the value
    with that flag (or, where no inventory is read, it is the flag's default). ``given``:
    the variables the user did set with their flags; a default the user never typed is
    marked ``(the default)`` where the message is about it. ``coralpi_opencv: 'pip'`` ->
    ``--opencv pip``, ``coralpi_accept_max_eula: must be true`` -> ``--accept-max-eula must
    be given``."""
    typed = set(given)
    for spec in flags:
        var = re.escape(spec.variable)
        if spec.const is None:
            known = BY_NAME.get(spec.variable)
            bare = "|".join(re.escape(c) for c in (known.choices if known else ())) or "(?!)"
            text = re.sub(
                rf"\b{var}: (?:'(?P<quoted>[^'\s]*)'|(?P<bare>{bare})\b)",
                partial(
                    _flag_and_value,
                    flag=spec.flag,
                    default=known.default if known and spec.variable not in typed else None,
                    subject=text.find(spec.variable),
                ),
                text,
            )
        else:
            text = re.sub(rf"\b{var}: must be {spec.const}\b", f"{spec.flag} must be given", text)
            text = re.sub(rf"\b{var}: {spec.const}\b", spec.flag, text)
        text = re.sub(rf"\b{var}\b", spec.flag, text)
        text = text.replace(f"host given with -e: {spec.flag}", spec.flag)
    return text


def _flag_and_value(match: re.Match[str], *, flag: str, default: str | None, subject: int) -> str:
    """``FLAG VALUE``; the message's subject (its first mention of the variable) is marked
    as the flag's default when the user did not type the flag."""
    found = match["quoted"] if match["quoted"] is not None else match["bare"]
    untyped = found == default and match.start() == subject
    return f"{flag} {found}" + (" (the default)" if untyped else "")


def flags_given(args: argparse.Namespace, flags: Mapping[str, FlagFor]) -> list[str]:
    """The variables of ``flags`` (by argparse dest) the command line set."""
    return [spec.variable for dest, spec in flags.items() if getattr(args, dest, None) is not None]


# ---------------------------------------------------------------------------------------
# --list-hosts, and the probe as -v and the progress lines want it


def list_hosts(
    inventory: Path, limit: str | None, as_json: bool, out: TextIO | None = None
) -> None:
    """The hosts ``inventory`` and ``limit`` select (read by ansible-inventory, their
    variables checked as a run would), one a line as ansible-playbook's ``--list-hosts``
    shows them, or ``{"hosts": [...]}``. No host is contacted, nothing is written."""
    stream = out or sys.stdout
    names = [host.name for host in load_inventory(inventory, limit)]
    if as_json:
        json.dump({"hosts": names}, stream, indent=2)
        stream.write("\n")
        return
    print(f"hosts ({len(names)}):", file=stream)
    for name in names:
        print(f"  {name}", file=stream)


def prober(verbosity: int = 0, progress: str | None = None) -> Prober:
    """The probe play for the planning service, with ansible-playbook's ``-v`` count;
    ``progress``: show live per-host progress on stderr under that title; with ``-v``,
    Ansible's own output instead, as it comes."""

    def probe(
        inventory: Path, run_dir: Path, limit: str | None, extravars: Mapping[str, Any]
    ) -> ProbeResult:
        with contextlib.ExitStack() as stack:
            on_change = (
                stack.enter_context(live_progress(progress, shown=not verbosity))
                if progress
                else None
            )
            return probe_hosts(inventory, run_dir, limit, extravars, on_change, verbosity=verbosity)

    return probe
