from __future__ import annotations

import pytest
from verify_fakeroot import standard_fact

from verify import expected


@pytest.mark.parametrize(
    ("version", "constraint", "ok"),
    [
        ("1.26.4", "<2", True),
        ("2.0.0", "<2", False),
        ("1.24.2", ">=1.23.2,<2", True),
        ("1.23.1", ">=1.23.2", False),
        ("2.14.0", "==2.14.0", True),
        ("2.14.1", "==2.14.*", True),
        ("2.13.0", "!=2.13.*", False),
        ("1.4.2", "~=1.4", True),
        ("2.0", "~=1.4", False),
        ("2.11.1", "<=2.11.1", True),
        ("1.26.4rc1", "<2", True),
    ],
)
def test_satisfies(version: str, constraint: str, ok: bool) -> None:
    assert expected.satisfies(version, constraint) is ok


def test_satisfies_refuses_unreadable_constraints() -> None:
    with pytest.raises(ValueError):
        expected.satisfies("1.0", "around 2")


def test_from_fact() -> None:
    exp = expected.from_fact(standard_fact(runtime_variant=None, runtime_package="libedgetpu1-max"))
    assert exp.origin == "local fact"
    assert exp.runtime_variant == "max"  # derived from the package name
    assert exp.python_runtime_module == "tflite_runtime.interpreter"
    assert exp.ld_preload is None and exp.ld_preload_known
    assert exp.camera is True


def test_from_plan_follows_design_section_1() -> None:
    plan = {
        "choices": {"runtime": "max", "accelerator": "pcie", "opencv": "pip", "camera": False},
        "runtime": {"source": "coral-apt", "package": "libedgetpu1-max", "version": "16.0"},
        "python_runtime": {
            "package": "ai-edge-litert",
            "version": "2.3.0",
            "module": "ai_edge_litert.interpreter",
        },
        "numpy": {"constraint": ">=1.23.2", "source": "pip"},
        "opencv": {"source": "pip", "package": "opencv-python-headless"},
        "ld_preload": "/usr/lib/arm-linux-gnueabihf/libatomic.so.1",
        "camera": {"method": "camera-auto-detect", "config_path": "/boot/firmware/config.txt"},
        "venv": {"path": "/opt/coralpi/venv"},
    }
    exp = expected.from_plan(plan, "plan x.json")
    assert (exp.runtime_variant, exp.runtime_version, exp.runtime_source) == (
        "max",
        "16.0",
        "coral-apt",
    )
    assert exp.python_runtime_module == "ai_edge_litert.interpreter"
    assert exp.accelerator == "pcie" and exp.camera is False
    assert exp.ld_preload == plan["ld_preload"] and exp.numpy_constraint == ">=1.23.2"
    assert expected.from_plan({}, "empty").runtime_package is None
