"""`python -m verify`: read the system, judge it, run the smoke test, report.

Exit status: 0 every check passed (warnings allowed), 1 usage error, 2 a check failed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import IO, Any, NoReturn

from . import __version__, assets, checks, errors, expected, facts, report, smoke
from .rootfs import RootFS

EXIT_OK, EXIT_USAGE, EXIT_FAILED = 0, 1, 2


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m verify",
        description="Check a Coral Edge TPU host and run the bird smoke test.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--root",
        default="/",
        metavar="DIR",
        help="read the system below DIR instead of / (recorded facts)",
    )
    parser.add_argument("--no-smoke", action="store_true", help="skip the smoke test")
    parser.add_argument(
        "--assets",
        metavar="DIR",
        help="directory holding the pinned smoke-test files (sha256-checked)",
    )
    parser.add_argument(
        "--assets-url",
        metavar="URL",
        help="mirror to download assets from: <URL>/<file>, or a template with {commit} and {file}",
    )
    parser.add_argument(
        "--cache-dir", metavar="DIR", help="download cache (default $XDG_CACHE_HOME/coralpi/assets)"
    )
    parser.add_argument(
        "--count",
        type=int,
        default=10,
        metavar="N",
        help="timed inferences after the first (default 10)",
    )
    parser.add_argument("--top-k", type=int, default=3, metavar="K")
    parser.add_argument(
        "--model",
        metavar="M",
        help="own model (Edge TPU or CPU) instead of the bird classifier; needs --labels",
    )
    parser.add_argument("--labels", metavar="L")
    parser.add_argument(
        "--image",
        metavar="I",
        help="own image to classify; the bird classifier's expectation stays the parrot's "
        "unless --expect says otherwise",
    )
    parser.add_argument(
        "--expect",
        metavar="LABEL",
        help=f"expected top-1 label (default {assets.EXPECTED_LABEL!r} for the bird "
        "classifier, whatever the image; none for an own --model)",
    )
    parser.add_argument(
        "--user",
        metavar="NAME",
        help="user that runs inference (group checks); default: $SUDO_USER or the current user",
    )
    parser.add_argument(
        "--plan", metavar="FILE", help="the plan JSON for this host (else the local fact is used)"
    )
    return parser


def _load_plan(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--plan {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"--plan {path}: not a JSON object")
    plans = data.get("coralpi_plans")
    if isinstance(plans, dict) and len(plans) == 1:  # the playbooks' extra-vars form
        only = next(iter(plans.values()))
        if isinstance(only, dict):
            return only
    return data


def _validate(args: argparse.Namespace) -> None:
    if args.count < 1:
        raise UsageError("--count must be at least 1")
    if args.top_k < 1:
        raise UsageError("--top-k must be at least 1")
    if not os.path.isdir(args.root):
        raise UsageError(f"--root {args.root}: not a directory")
    if args.model and not args.labels:
        raise UsageError("--model needs --labels")
    for option in ("model", "labels", "image"):
        path = getattr(args, option)
        if path and not os.path.isfile(path):
            raise UsageError(f"--{option} {path}: no such file")
    if args.assets and not os.path.isdir(args.assets):
        raise UsageError(f"--assets {args.assets}: not a directory")


def _default_user() -> str | None:
    user = os.environ.get("SUDO_USER")
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:
        return None


def _facts_json(
    sys_facts: facts.SystemFacts, py: facts.PythonFacts, exp: expected.Expected
) -> dict[str, Any]:
    accelerators = [
        f"usb {d.vendor}:{d.product} speed {d.speed}"
        for d in sys_facts.usb_devices
        if (d.vendor, d.product) in (facts.USB_IDS_RUNNING, facts.USB_IDS_BOOTLOADER)
    ]
    accelerators += [
        f"pci {d.vendor}:{d.device}"
        for d in sys_facts.pci_devices
        if (d.vendor, d.device) == facts.PCI_IDS
    ]
    return {
        "os_id": sys_facts.os_id,
        "os_codename": sys_facts.os_codename,
        "os_version_id": sys_facts.os_version_id,
        "arch": sys_facts.arch,
        "kernel_arch": sys_facts.kernel_arch,
        "board": sys_facts.board,
        "boot_config": sys_facts.boot_config,
        "python": py.python,
        "python_executable": py.executable,
        "user": sys_facts.user,
        "runtime_packages": {
            p: v for p, v in sys_facts.packages.items() if p in facts.RUNTIME_PACKAGES
        },
        "edgetpu_library": sys_facts.edgetpu_library,
        "accelerators": accelerators,
        "kernel": sys_facts.kernel.release,
        "page_size": sys_facts.kernel.page_size,
        "kernel_packages": {
            p: v
            for p, v in sys_facts.packages.items()
            if p == "gasket-dkms" or p.startswith(("linux-headers-", "linux-image-"))
        },
        "usb_power": {
            "supply_max_ma": sys_facts.usb_power.supply_max_ma,
            "usb_max_current_enable": sys_facts.usb_power.limit_lifted_dt,
            "over_current": sys_facts.usb_power.over_current,
        },
        "camera_sensors": sys_facts.camera.sensors if sys_facts.camera.tool else None,
        "python_runtime": {
            "package": py.runtime.package,
            "version": py.runtime.version,
            "module": py.runtime.module,
        },
        "numpy": py.numpy_version,
        "opencv": py.opencv.version if py.opencv and py.opencv.ok else None,
        "expected_from": exp.origin,
    }


def _usb_speed(sys_facts: facts.SystemFacts) -> str | None:
    for device in sys_facts.usb_devices:
        if (device.vendor, device.product) in (facts.USB_IDS_RUNNING, facts.USB_IDS_BOOTLOADER):
            return device.speed
    return None


def _run_smoke(
    args: argparse.Namespace, module: Any, py: facts.PythonFacts, sys_facts: facts.SystemFacts
) -> tuple[smoke.SmokeResult, str | None]:
    store = assets.AssetStore(args.assets, args.assets_url, args.cache_dir)
    user_files = {p for p in (args.model, args.labels, args.image) if p}

    def asset_path(name: str) -> str:
        return name if name in user_files else store.path(name)

    attached = any(
        (d.vendor, d.product) in (facts.USB_IDS_RUNNING, facts.USB_IDS_BOOTLOADER)
        for d in sys_facts.usb_devices
    ) or any((d.vendor, d.device) == facts.PCI_IDS for d in sys_facts.pci_devices)
    needs_apex = any((d.vendor, d.device) == facts.PCI_IDS for d in sys_facts.pci_devices)

    def refine(cause: errors.Cause) -> errors.Cause:
        return errors.refine_delegate_cause(
            cause, attached, sys_facts.user, sys_facts.user_groups, needs_apex
        )

    model = args.model
    expect = args.expect if args.expect is not None else (None if model else assets.EXPECTED_LABEL)
    options = smoke.SmokeOptions(count=args.count, top_k=args.top_k, expect=expect)
    result = smoke.run(
        module,
        {"package": py.runtime.package, "version": py.runtime.version},
        asset_path,
        options,
        edgetpu_model=model or assets.EDGETPU_MODEL,
        cpu_model=model or assets.CPU_MODEL,
        labels_file=args.labels or assets.LABELS,
        image_file=args.image or assets.IMAGE,
        board=sys_facts.board,
        arch=sys_facts.arch,
        usb_speed=_usb_speed(sys_facts),
        throttled=sys_facts.throttled,
        refine=refine,
    )
    return result, expect


def expectation_note(args: argparse.Namespace) -> str | None:
    """What an own --image is judged against when no --expect is given: still the bird
    classifier's answer for parrot.jpg, which is easy to miss; said, with how to change it."""
    if args.no_smoke or not args.image or args.expect is not None or args.model:
        return None
    return (
        f"--image {args.image} without --expect: the top-1 is expected to be the parrot's "
        f"label, {assets.EXPECTED_LABEL!r} (the bird classifier on parrot.jpg); pass "
        "--expect LABEL with the label your image should get"
    )


def _say_expectation(
    note: str, smoke_result: smoke.SmokeResult, results: list[checks.CheckResult]
) -> None:
    """Put the note where the smoke test's outcome is read: its note and, when the label
    did not match, the failed check's fix (a wrong label then means a wrong expectation,
    not a broken runtime)."""
    smoke_result.note = "; ".join(n for n in (smoke_result.note, note) if n)
    if smoke_result.label_ok is False:
        for result in results:
            if result.name == "smoke" and result.status == checks.FAIL:
                result.fix = note


def overall(results: list[checks.CheckResult]) -> str:
    statuses = {r.status for r in results}
    if checks.FAIL in statuses:
        return "fail"
    return "warn" if checks.WARN in statuses else "pass"


def run(args: argparse.Namespace, out: IO[str]) -> int:
    _validate(args)
    note = expectation_note(args)
    if note is not None:
        sys.stderr.write(f"verify: {note}\n")
    plan = _load_plan(args.plan) if args.plan else None
    fs = RootFS(args.root)

    probe = facts.start_opencv_probe()  # runs while the system is read and the smoke test runs
    try:
        sys_facts = facts.gather_system(fs, args.user or _default_user())
        plan_exp = expected.from_plan(plan, f"plan {args.plan}") if plan is not None else None
        if plan_exp is not None:
            exp = plan_exp
        elif sys_facts.local_fact is not None:
            exp = expected.from_fact(sys_facts.local_fact)
        else:
            exp = expected.Expected()
        py, module = facts.gather_python(exp.python_runtime_module)
        smoke_result: smoke.SmokeResult | None = None
        expect_label: str | None = None
        if not args.no_smoke:
            smoke_result, expect_label = _run_smoke(args, module, py, sys_facts)
    finally:
        opencv = facts.finish_opencv_probe(probe)
    py.opencv = opencv

    results = checks.run_all(sys_facts, py, exp, plan_exp, fs.exists)
    if smoke_result is not None:
        results += checks.smoke_checks(smoke_result, sys_facts, expect_label)
        if note is not None:
            _say_expectation(note, smoke_result, results)
    document: dict[str, Any] = {
        "facts": _facts_json(sys_facts, py, exp),
        "checks": [r.to_dict() for r in results],
    }
    if smoke_result is not None:
        document["smoke"] = smoke_result.to_dict()
    document["result"] = overall(results)
    report.render(document, out, args.json)
    return EXIT_FAILED if document["result"] == "fail" else EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args, sys.stdout)
    except UsageError as exc:
        sys.stderr.write(f"verify: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        # A bug in verify must still give the controller a report (and not exit 1, which
        # means "usage"): one failed check named after the error.
        import traceback

        traceback.print_exc(file=sys.stderr)
        document = {
            "facts": {},
            "checks": [
                checks.CheckResult(
                    "verify",
                    checks.FAIL,
                    f"verify itself failed: {type(exc).__name__}: {exc}",
                    "see the traceback on stderr",
                ).to_dict()
            ],
            "result": "fail",
        }
        report.render(document, sys.stdout, args.json)
        return EXIT_FAILED
