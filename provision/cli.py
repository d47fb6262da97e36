"""The ``coralpi`` command line: one entry point, one module per subcommand.

Errors become exit codes here and only here: 0 ok, 1 usage / configuration / unsupported
target, 2 a check or host failed, 128 + the signal when interrupted (see
:mod:`provision.errors`). Commands return 0 or raise.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import re
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from provision import __version__
from provision.errors import CoralpiError, Stopped, signal_of
from provision.redaction import redact

# Subcommand modules, in the order `coralpi --help` lists them. Adding a command is adding
# its module here; the module exposes `register(subparsers)`.
COMMAND_MODULES: list[str] = [
    "provision.commands.plan_cmd",
    "provision.commands.apply_cmd",
    "provision.commands.verify_cmd",
    "provision.commands.lock_cmd",
    "provision.commands.fetch_cmd",
    "provision.commands.image_cmd",
    "provision.commands.pull_cmd",
    "provision.commands.status_cmd",
    "provision.commands.report_cmd",
    "provision.commands.matrix_cmd",
    "provision.commands.init_cmd",
]


class UsageError(CoralpiError):
    """Bad command line (argparse's own errors, re-raised so they exit 1, not 2); the
    message names the (sub)command itself, so it is printed bare."""

    bare = True


_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<given>[^']*)' \(choose from (?P<known>.*)\)")


def _did_you_mean(message: str) -> str:
    """argparse's "invalid choice" with the nearest valid one, when one is near."""
    found = _INVALID_CHOICE.search(message)
    if found is None:
        return message
    known = [k.strip().strip("'") for k in found["known"].split(",")]
    close = difflib.get_close_matches(found["given"], known, n=1)
    return f"{message}; did you mean {close[0]}?" if close else message


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        text = _did_you_mean(message)
        raise UsageError(f"{self.prog}: {text}\n{self.format_usage().rstrip()}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="coralpi",
        description="Provision and verify Raspberry Pis with a Google Coral Edge TPU.",
    )
    parser.add_argument("--version", action="version", version=f"coralpi {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _stop(signum: int, _frame: object) -> None:
    raise Stopped(signum)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    # SIGTERM / SIGHUP unwind like Ctrl-C (each command cleans up what it started).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    try:
        args = parser.parse_args(argv)
        func = getattr(args, "func", None)
        if func is None:
            parser.print_help(sys.stderr)
            return 1
        return int(func(args))
    except CoralpiError as exc:
        if exc.message:
            text = exc.message if exc.bare else f"coralpi: {exc}"
            print(redact(text), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # a command that had nothing of its own to undo
        signum = signal_of(exc)
        print(f"coralpi: interrupted ({signal.Signals(signum).name})", file=sys.stderr)
        return 128 + signum
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0
    except BrokenPipeError:  # `coralpi plan ... | head`
        sys.stderr.close()
        return 0
