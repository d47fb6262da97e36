"""Turn runtime error messages into one-line causes and fixes a user can act on."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class Cause:
    cause: str
    fix: str
    raw: str


_RULES: tuple[tuple[str, str, str], ...] = (
    (
        r"libedgetpu\.so\.1: cannot open shared object file|"
        r"(?:could not|cannot|unable to) (?:open|find|load).*libedgetpu",
        "the Edge TPU runtime library libedgetpu.so.1 is not installed",
        "install the runtime: re-run `coralpi apply` (role coralpi_edgetpu)",
    ),
    (
        r"Package requires runtime version \((\d+)\), which is newer than this runtime "
        r"version \((\d+)\)",
        "the model was compiled for Edge TPU runtime version {0}, the installed libedgetpu "
        "only supports version {1}",
        "install a newer runtime (community libedgetpu build) or recompile the model with "
        "`edgetpu_compiler --min_runtime_version {1}`",
    ),
    (
        r"Encountered unresolved custom op: edgetpu-custom-op",
        "an Edge TPU-compiled model was run without the Edge TPU delegate",
        "load the delegate (`load_delegate('libedgetpu.so.1')`) or use the CPU model "
        "(the one without `_edgetpu`)",
    ),
    (
        r"Failed to load delegate",
        "the Edge TPU delegate did not load: no accelerator attached, no permission on the "
        "device (user not in plugdev/apex), or a runtime/tflite version mismatch",
        "plug the accelerator into a USB3 port, make sure the user is in plugdev (log in "
        "again after `coralpi apply`), and use the runtime the plan pairs with this tflite",
    ),
    (
        r"undefined symbol: __atomic_\w+",
        "the library needs libatomic, which is not preloaded (LD_PRELOAD)",
        "set LD_PRELOAD=/usr/lib/arm-linux-gnueabihf/libatomic.so.1: re-run `coralpi apply` "
        "(role coralpi_opencv sets the plan's ld_preload)",
    ),
    (
        r"_ARRAY_API not found|numpy\.core\.multiarray failed to import|"
        r"compiled using NumPy 1\.x cannot be run in\s+NumPy 2",
        "numpy 2 is installed but this runtime was built against numpy 1.x",
        "install numpy<2 in the runtime's environment: re-run `coralpi apply`",
    ),
    (
        r"GLIBC_(\d+\.\d+)' not found",
        "a binary needs glibc {0}, newer than this system's",
        "use the wheel the plan picks for this OS release (`coralpi plan` shows it)",
    ),
    (
        r"No module named '?(tflite_runtime|ai_edge_litert)",
        "the inference runtime ({0}) is not installed in this Python",
        "run verify with the coralpi venv's python (e.g. /opt/coralpi/venv/bin/python) or "
        "re-run `coralpi apply`",
    ),
    (
        r"No module named '?cv2",
        "OpenCV (cv2) is not installed in this Python",
        "re-run `coralpi apply` (role coralpi_opencv); the venv needs system site packages "
        "for python3-opencv",
    ),
    (
        r"killed by signal 11|Segmentation fault|SIGSEGV",
        "the process crashed (segmentation fault)",
        "official libedgetpu 16.0 crashes with tflite-runtime > 2.11.1: use the runtime "
        "pairing the plan picks (`coralpi plan`)",
    ),
)


def first_line(text: str) -> str:
    for line in text.strip().splitlines():
        if line.strip():
            return line.strip()
    return text.strip()


def translate(message: str) -> Cause:
    """The known cause of `message` (an exception text or stderr), or its first line."""
    for pattern, cause, fix in _RULES:
        match = re.search(pattern, message, re.I | re.S)
        if match:
            groups = match.groups()
            return Cause(cause.format(*groups), fix.format(*groups), message)
    return Cause(first_line(message) or "unknown error", "", message)


def translate_exception(exc: BaseException) -> Cause:
    text = str(exc)
    return translate(text if text else type(exc).__name__)


DELEGATE_CAUSE_PREFIX = "the Edge TPU delegate did not load"


def refine_delegate_cause(
    cause: Cause, attached: bool, user: str | None, groups: list[str], needs_apex: bool
) -> Cause:
    """Narrow the generic 'Failed to load delegate' down using what the facts show."""
    if not cause.cause.startswith(DELEGATE_CAUSE_PREFIX):
        return cause
    if not attached:
        return Cause(
            "the runtime loaded but found no Edge TPU (no accelerator attached)",
            "plug the Coral USB Accelerator into a USB3 (blue) port, or seat the PCIe/M.2 module",
            cause.raw,
        )
    missing = [g for g in ["plugdev"] + (["apex"] if needs_apex else []) if g not in groups]
    if user and user != "root" and missing:
        return Cause(
            f"no permission on the accelerator: {user} is not in " + ", ".join(missing),
            "re-run `coralpi apply` (adds the user to the groups), then log in again",
            cause.raw,
        )
    return Cause(
        "the accelerator is attached but the delegate did not load: likely a "
        "libedgetpu/tflite version mismatch or an under-powered port",
        "use the runtime pairing `coralpi plan` picks, and a powered USB hub",
        cause.raw,
    )
