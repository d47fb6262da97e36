"""``coralpi plan``: what would be installed on a host, and why.

Two forms: a hypothetical host (``--os CODENAME --arch ARCH --python X.Y``) or the hosts of
an inventory (``-i INVENTORY [--limit PATTERN]``, facts gathered by the probe play).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any, TextIO

from provision.commands import options
from provision.commands.options import FlagFor
from provision.errors import ConfigError, CoralpiError, HostFailed, UnsupportedTarget
from provision.planning import service
from provision.planning.matrix import controller_supports, load_matrix, resolve
from provision.planning.plan import Plan
from provision.planning.probe import probe_hosts
from provision.planning.service import Prober
from provision.planning.targets import ARCHS, Choices, Target, choices_from_vars
from provision.planning.variables import BY_NAME

# Flag dest -> the flag and the inventory variable it overrides.
_CHOICE_FLAGS = {
    "runtime": FlagFor("--runtime", "coralpi_runtime"),
    "accept_max_eula": FlagFor("--accept-max-eula", "coralpi_accept_max_eula", "true"),
    "accelerator": FlagFor("--accelerator", "coralpi_accelerator"),
    "opencv": FlagFor("--opencv", "coralpi_opencv"),
    "camera": FlagFor("--no-camera", "coralpi_camera", "false"),
    "pip_index_url": FlagFor("--pip-index-url", "coralpi_pip_index_url"),
    "community_wheels": FlagFor("--community-wheels", "coralpi_community_wheels", "true"),
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show what would be installed on a host and why",
        description="Resolve the compatibility matrix for a hypothetical host (--os) or for "
        "the hosts of an inventory (-i). Nothing is changed on any host.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--os",
        dest="codename",
        metavar="CODENAME",
        help="release codename: buster, bullseye, bookworm, trixie, jammy, noble, resolute",
    )
    options.add_inventory(where, "Ansible inventory: plan its real hosts")
    where.add_argument(
        "--all",
        dest="all_rows",
        action="store_true",
        help="summarise every release x architecture with the release's own python",
    )
    options.add_limit(parser, "with -i: only hosts matching this pattern")
    options.add_list_hosts(parser)
    options.add_verbosity(parser, "with -i: the probe's")
    parser.add_argument("--arch", help="x86_64, aarch64 or armv7l (aliases amd64, arm64, armhf)")
    parser.add_argument("--python", help="target python X.Y")
    parser.add_argument("--glibc", help="target glibc X.Y (default: the release's)")
    parser.add_argument("--board", help="board model as in /proc/device-tree/model")
    parser.add_argument("--runtime", choices=BY_NAME["coralpi_runtime"].choices, default=None)
    parser.add_argument(
        "--accept-max-eula",
        action="store_const",
        const=True,
        default=None,
        help="accept the max runtime's licence terms (needed for --runtime max)",
    )
    parser.add_argument(
        "--accelerator", choices=BY_NAME["coralpi_accelerator"].choices, default=None
    )
    parser.add_argument("--opencv", choices=BY_NAME["coralpi_opencv"].choices, default=None)
    parser.add_argument(
        "--no-camera",
        dest="camera",
        action="store_const",
        const=False,
        default=None,
        help="do not configure a camera",
    )
    parser.add_argument(
        "--pip-index-url", default=None, help="extra index for wheels PyPI lacks (piwheels-style)"
    )
    parser.add_argument(
        "--community-wheels",
        action="store_const",
        const=True,
        default=None,
        help="also offer the community tflite_runtime wheels (coralpi_community_wheels)",
    )
    options.add_extra_vars(
        parser,
        "with -i: variables for every host, as ansible-playbook takes them (NAME=VALUE, "
        "@FILE or a JSON object): coralpi_* settings or what the connection needs, e.g. "
        "ansible_user=pi (repeatable)",
    )
    parser.add_argument(
        "--sources",
        action="store_true",
        help="also show where each matrix fact the plan used was read, and when "
        "(JSON always carries them)",
    )
    options.add_json(parser, "print JSON (docs/DESIGN.md 1)")
    parser.set_defaults(func=run)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The inventory variables the command line sets explicitly."""
    return {
        spec.variable: getattr(args, dest)
        for dest, spec in _CHOICE_FLAGS.items()
        if getattr(args, dest, None) is not None
    }


def _named_by_flags(args: argparse.Namespace) -> Callable[[str], str]:
    """A message with each variable the flags set named by its flag. Without -i nothing
    else sets them, so every flag's variable is named by its flag (its default included)."""
    flags = [
        spec
        for dest, spec in _CHOICE_FLAGS.items()
        if args.inventory is None or getattr(args, dest, None) is not None
    ]
    given = options.flags_given(args, _CHOICE_FLAGS)
    return lambda text: options.name_flags(text, flags, given)


def hypothetical_target(args: argparse.Namespace) -> Target:
    """The Target described by --os/--arch/--python/--glibc/--board."""
    missing = [
        flag for flag, value in (("--arch", args.arch), ("--python", args.python)) if not value
    ]
    if missing:
        raise ConfigError(f"plan --os needs {' and '.join(missing)}")
    codename = str(args.codename).strip().lower()
    release = load_matrix().releases.get(codename)
    glibc = args.glibc or (release.glibc if release is not None else None)
    if glibc is None:
        # Unknown release and no --glibc: any value will do, resolve() refuses the release.
        glibc = "2.17"
    os_id = release.os_ids[0] if release is not None else "debian"
    return Target(os_id, codename, args.arch, args.python, glibc, args.board)


def running_ansible_core() -> str | None:
    """The ansible-core version installed beside this controller, if any."""
    try:
        return metadata.version("ansible-core")
    except metadata.PackageNotFoundError:
        return None


def controller_check(plan: Plan) -> tuple[bool, str]:
    version = running_ansible_core()
    if version is None:
        return False, "ansible-core is not installed on this controller"
    return controller_supports(plan, version)


def plan_inventory(
    inventory: str | Path,
    limit: str | None,
    overrides: Mapping[str, Any],
    prober: Prober | None = None,
) -> tuple[dict[str, Plan], dict[str, str]]:
    """Plans for every host of ``inventory`` (``{host: plan}``, ``{host: error}``), made by
    the planning service: variables checked before the probe runs."""
    planned = service.plan_inventory(
        Path(inventory), limit, overrides, prober=prober or probe_hosts
    )
    return planned.plans, planned.errors


# ---------------------------------------------------------------------------------------
# Output.


def plan_rows(plan: Plan) -> list[tuple[str, str, str]]:
    """(field, choice, reason) rows for people."""
    rt, py, np_, cv = plan.runtime, plan.python_runtime, plan.numpy, plan.opencv
    runtime = f"{rt.package} {rt.version} ({rt.source}, TF {rt.tf_version})"
    if rt.deb_filename:
        runtime += f"\n{rt.deb_filename}"
    camera = plan.camera.method + (
        f" ({plan.camera.config_path})" if plan.camera.config_path else ""
    )
    venv = plan.venv.path + (" +system-site-packages" if plan.venv.system_site_packages else "")
    if plan.venv.pip:
        venv += f"\nupgrade {plan.venv.pip}"
    pcie_rows: list[tuple[str, str, str]] = []
    if plan.pcie is not None:
        pc = plan.pcie
        boot = (
            f"{pc.config_path} under {pc.config_section}:\n" + "\n".join(pc.config_lines)
            if pc.config_lines
            else "nothing to write"
        )
        pcie_rows = [
            ("pcie_boot", boot + f"\nreboot needed: {pc.reboot}", pc.reason),
            (
                "pcie_driver",
                f"{pc.driver_package} {pc.driver_version} ({pc.driver_deb})\n"
                f"headers: {' '.join(pc.headers_packages)}"
                + (f"\nkernel: {pc.kernel}" if pc.kernel else ""),
                "built by DKMS on the host; the apex group, its udev rule and module loading",
            ),
        ]
    return [
        ("runtime", runtime, rt.reason),
        (
            "python_runtime",
            f"{py.package}=={py.version} ({py.python_tag}, TF {py.tf_version})",
            py.reason,
        ),
        ("numpy", f"numpy{np_.constraint} from {np_.source}", np_.reason),
        (
            "opencv",
            cv.package + (f"=={cv.version}" if cv.version else "") + f" ({cv.source})",
            cv.reason,
        ),
        ("ld_preload", plan.ld_preload or "none", plan.ld_preload_reason),
        ("camera", camera, plan.camera.reason),
        *pcie_rows,
        ("venv", venv, plan.venv.reason),
        ("apt_packages", " ".join(plan.apt_packages) or "none", "installed from the apt mirror"),
        (
            "pip_requirements",
            "\n".join(plan.pip_requirements),
            "installed from wheels the controller pushes (hosts never reach PyPI)",
        ),
        ("controller", f"ansible-core{plan.controller.ansible_core}", plan.controller.reason),
    ]


def image_line(plan: Plan) -> str:
    """Whether `coralpi image prepare/build` can serve this target, and which Ansible then
    runs on the Pi itself (provision.artifacts.pi_ansible decides)."""
    from provision.artifacts import pi_ansible

    try:
        choice = pi_ansible.decide(plan)
    except ConfigError as exc:
        return f"image prepare/build: not possible: {exc}"
    return f"image prepare/build: {choice.reason}"


def _extra_lines(plan: Plan, sources: bool = False) -> list[str]:
    ok, message = controller_check(plan)
    lines = [f"warning: {w}" for w in plan.warnings]
    lines += list(plan.notes)
    lines.append(f"controller check: {'ok' if ok else 'NOT OK'}: {message}")
    lines.append(image_line(plan))
    if sources:
        lines += [f"source: {s.line()}" for s in plan.sources]
    return lines


def render_plain(plan: Plan, title: str, out: TextIO, sources: bool = False) -> None:
    print(title, file=out)
    for name, choice, reason in plan_rows(plan):
        print(f"  {name}: {choice.replace(chr(10), ' ')}", file=out)
        print(f"    why: {reason}", file=out)
    for line in _extra_lines(plan, sources):
        print(f"  {line}", file=out)


def render_table(plan: Plan, title: str, out: TextIO, sources: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=True)
    table.add_column("field", style="bold")
    table.add_column("choice", style="cyan", max_width=48, overflow="fold")
    table.add_column("reason")
    for row in plan_rows(plan):
        table.add_row(*row)
    console = Console(file=out)
    console.print(table)
    for line in _extra_lines(plan, sources):
        style = "yellow" if line.startswith("warning") or "NOT OK" in line else None
        console.print(line, style=style, markup=False, highlight=False)


def render(plan: Plan, title: str, out: TextIO, sources: bool = False) -> None:
    if out.isatty():
        render_table(plan, title, out, sources)
    else:
        render_plain(plan, title, out, sources)


def matrix_rows(choices: Choices, board: str | None = None) -> list[dict[str, Any]]:
    """One summary per release x architecture (the release's own python and glibc)."""
    rows: list[dict[str, Any]] = []
    for rel in load_matrix().releases.values():
        for arch in ARCHS:
            target = Target(rel.os_ids[0], rel.name, arch, rel.python, rel.glibc, board)
            row: dict[str, Any] = {"target": target.describe()}
            try:
                plan = resolve(target, choices)
            except UnsupportedTarget as exc:
                row.update(supported=False, error=str(exc), nearest=exc.nearest)
            except ConfigError as exc:
                row.update(supported=False, error=str(exc), nearest=None)
            else:
                rt, py = plan.runtime, plan.python_runtime
                row.update(
                    supported=True,
                    runtime=f"{rt.package} {rt.version} ({rt.source})",
                    python_runtime=f"{py.package}=={py.version}",
                    numpy=f"numpy{plan.numpy.constraint} ({plan.numpy.source})",
                    ansible_core=plan.controller.ansible_core,
                )
            rows.append(row)
    return rows


def _print_rows(rows: list[dict[str, Any]], out: TextIO) -> None:
    for row in rows:
        if row["supported"]:
            print(
                f"{row['target']}: {row['python_runtime']}, {row['runtime']}, {row['numpy']}, "
                f"ansible-core{row['ansible_core']}",
                file=out,
            )
        else:
            nearest = f" (nearest: {row['nearest']})" if row["nearest"] else ""
            print(f"{row['target']}: REFUSED{nearest}", file=out)


def run(args: argparse.Namespace, prober: Prober | None = None) -> int:
    """0 every plan made; 1 a refusal or bad input; HostFailed (exit 2) when a host could
    not be probed (unreachable) and nothing was refused. Messages name the flag a value
    came from."""
    named = _named_by_flags(args)
    try:
        return _run(args, prober, named)
    except CoralpiError as exc:
        exc.message = named(exc.message)
        raise


def _run(args: argparse.Namespace, prober: Prober | None, named: Callable[[str], str]) -> int:
    out = sys.stdout
    if args.inventory is None:
        for flag, given in (("--limit", args.limit), ("--list-hosts", args.list_hosts)):
            if given:
                raise ConfigError(f"plan: {flag} goes with -i INVENTORY")
    elif args.list_hosts:
        options.list_hosts(args.inventory, args.limit, args.json)
        return 0
    overrides = _overrides(args)
    if args.inventory is not None:
        # -e: coralpi_* settings for every host, and what the probe's connection needs.
        overrides = {**options.parse_extra_vars(args.extra_vars), **overrides}
    elif args.extra_vars:
        raise ConfigError("plan: -e goes with -i INVENTORY (for --os, use the flags)")
    if args.all_rows:
        rows = matrix_rows(choices_from_vars(overrides), args.board)
        if args.json:
            json.dump(rows, out, indent=2)
            out.write("\n")
        else:
            _print_rows(rows, out)
        return 0
    if args.inventory is None:
        target = hypothetical_target(args)
        plan = resolve(target, choices_from_vars(overrides))
        if args.json:
            json.dump(plan.to_dict(), out, indent=2)
            out.write("\n")
            ok, message = controller_check(plan)
            if not ok:
                print(f"coralpi: controller: {message}", file=sys.stderr)
        else:
            render(plan, f"plan for {target.describe()}", out, args.sources)
        return 0
    probe = prober or options.prober(
        args.verbosity, progress=None if args.json else "probing hosts"
    )
    planned = service.plan_inventory(Path(args.inventory), args.limit, overrides, prober=probe)
    plans = planned.plans
    errors = {host: named(message) for host, message in planned.errors.items()}
    if args.json:
        json.dump(
            {"plans": {h: p.to_dict() for h, p in plans.items()}, "errors": errors}, out, indent=2
        )
        out.write("\n")
    else:
        for host, plan in plans.items():
            render(plan, f"{host}: {plan.target.describe()}", out, args.sources)
    for host, message in errors.items():
        print(f"coralpi: {host}: {message}", file=sys.stderr)
    if any(h.probed and h.error is not None for h in planned.hosts):
        return 1  # a refusal: the inventory (or the flags) must change
    if any(not h.probed for h in planned.hosts):
        raise HostFailed("")  # a host could not be probed (named above)
    return 0
