"""`coralpi report [RUN_DIR]`: show a kept run's fleet report again, in any of its forms.

Without RUN_DIR, the newest run under the runs directory. The forms: the terminal table
(default), ``--json`` (report.json as written), ``--md`` (a Markdown table, for CI job
summaries) and ``--html FILE`` (the self-contained page every run also keeps as
report.html). All are made from the redacted report.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from provision.commands import options
from provision.errors import ConfigError
from provision.files import write_atomic
from provision.fleet.report import FleetReport, render, render_markdown
from provision.fleet.report_html import render_html
from provision.fleet.run import default_runs_root

HELP = "show a kept run's fleet report again (table, --json, --md or --html FILE)"


def register(sub: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser("report", help=HELP, description=HELP)
    parser.add_argument(
        "run_dir", nargs="?", type=Path, metavar="RUN_DIR", help="default: the newest run"
    )
    options.add_runs_dir(parser)
    form = parser.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print report.json")
    form.add_argument("--md", action="store_true", help="print a Markdown table")
    form.add_argument("--html", type=Path, metavar="FILE", help="write the page to FILE")
    parser.set_defaults(func=run)
    return parser


def newest_run(root: Path) -> Path:
    runs = sorted(p.parent for p in root.glob("*/report.json"))
    if not runs:
        raise ConfigError(f"report: no run with a report.json in {root}; name a RUN_DIR")
    return runs[-1]


def run(args: argparse.Namespace) -> int:
    run_dir: Path = args.run_dir or newest_run(args.runs_dir or default_runs_root())
    path = run_dir / "report.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(
            f"report: {path} does not exist (is {run_dir} a run directory?)"
        ) from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"report: {path} is not JSON: {exc}") from None
    report = FleetReport.from_dict(data)
    if args.html is not None:
        write_atomic(args.html, render_html(json.loads(report.to_json())).encode())
        print(f"wrote {args.html}")
    elif args.md:
        sys.stdout.write(render_markdown(report))
    else:
        render(report, as_json=args.json)
    return 0
