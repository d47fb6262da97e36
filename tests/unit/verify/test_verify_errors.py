from __future__ import annotations

import pytest

from verify import errors


@pytest.mark.parametrize(
    ("message", "cause_words", "fix_words"),
    [
        (
            "libedgetpu.so.1: cannot open shared object file: No such file or directory",
            "not installed",
            "coralpi_edgetpu",
        ),
        ("Failed to load delegate from libedgetpu.so.1\n", "no accelerator attached", "plugdev"),
        (
            "Internal: Unsupported data type in custom op handler: 0Node number 0 "
            "(EdgeTpuDelegateForCustomOp) failed to prepare.\nPackage requires runtime "
            "version (14), which is newer than this runtime version (13).",
            "runtime version 14",
            "--min_runtime_version 13",
        ),
        (
            "Encountered unresolved custom op: edgetpu-custom-op.\nNode number 0 "
            "(edgetpu-custom-op) failed to prepare.",
            "without the Edge TPU delegate",
            "CPU model",
        ),
        (
            "ImportError: /usr/lib/python3/dist-packages/cv2.so: undefined symbol: "
            "__atomic_fetch_add_8",
            "libatomic",
            "LD_PRELOAD",
        ),
        ("AttributeError: _ARRAY_API not found", "numpy 2", "numpy<2"),
        (
            "/lib/aarch64-linux-gnu/libc.so.6: version `GLIBC_2.34' not found",
            "glibc 2.34",
            "coralpi plan",
        ),
        ("ModuleNotFoundError: No module named 'tflite_runtime'", "tflite_runtime", "venv"),
    ],
)
def test_known_errors_become_causes(message: str, cause_words: str, fix_words: str) -> None:
    cause = errors.translate(message)
    assert cause_words in cause.cause
    assert fix_words in cause.fix
    assert "\n" not in cause.cause and "\n" not in cause.fix
    assert cause.raw == message


def test_unknown_error_keeps_its_first_line() -> None:
    cause = errors.translate("\nSomething odd happened\nwith details\n")
    assert cause.cause == "Something odd happened" and cause.fix == ""
    assert errors.translate_exception(KeyError()).cause == "KeyError"


def test_delegate_failure_is_narrowed_by_the_facts() -> None:
    generic = errors.translate("Failed to load delegate from libedgetpu.so.1")
    none = errors.refine_delegate_cause(generic, False, "pi", ["plugdev"], False)
    assert "no accelerator attached" in none.cause
    perm = errors.refine_delegate_cause(generic, True, "pi", ["pi"], True)
    assert perm.cause == "no permission on the accelerator: pi is not in plugdev, apex"
    root = errors.refine_delegate_cause(generic, True, "root", [], False)
    assert "version mismatch" in root.cause
    other = errors.translate("libedgetpu.so.1: cannot open shared object file")
    assert errors.refine_delegate_cause(other, False, "pi", [], False) is other
