"""The real smoke test on this machine's CPU: real tflite runtime, real Coral model, real parrot.

No Edge TPU is attached here, so verify must say so and classify on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO.parent / "shared" / "testdata" / "coral"
MACAW = "Ara macao (Scarlet Macaw)"

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason="Coral test data not present")


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verify", "--json", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_parrot_is_a_scarlet_macaw_on_the_cpu() -> None:
    pytest.importorskip("tflite_runtime.interpreter")
    done = run_verify("--assets", str(TESTDATA), "--count", "5", "--top-k", "3")
    document = json.loads(done.stdout)
    smoke = document["smoke"]
    assert smoke["device"] == "cpu"
    assert smoke["runtime"] == {"package": "tflite-runtime", "version": "2.14.0"}
    assert smoke["model"] == "mobilenet_v2_1.0_224_inat_bird_quant.tflite"
    assert smoke["note"].startswith("no Edge TPU usable: ")
    top = smoke["top"]
    assert len(top) == 3 and top[0]["label"] == MACAW
    assert 0.5 <= top[0]["score"] <= 1.0  # observed 0.80-0.82 with LANCZOS
    assert top[0]["score"] > top[1]["score"]
    latency = smoke["latency_ms"]
    assert 0 < latency["median"] <= latency["p95"]
    assert latency["first"] > 0
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["smoke"]["status"] == "pass"
    assert checks["smoke_edgetpu"]["status"] == "warn"
    assert "no accelerator attached" in checks["smoke_edgetpu"]["detail"]
    assert checks["python_runtime"]["status"] == "pass"
    # no check may fail just because this is not a Pi and holds no accelerator
    failing = {n: c["detail"] for n, c in checks.items() if c["status"] == "fail"}
    assert done.returncode == (2 if failing else 0), failing


def test_an_edgetpu_model_without_the_delegate_is_explained(tmp_path: Path) -> None:
    pytest.importorskip("tflite_runtime.interpreter")
    done = run_verify(
        "--model",
        str(TESTDATA / "mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite"),
        "--labels",
        str(TESTDATA / "inat_bird_labels.txt"),
        "--image",
        str(TESTDATA / "parrot.jpg"),
        "--count",
        "1",
    )
    assert done.returncode == 2
    document = json.loads(done.stdout)
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["smoke"]["status"] == "fail"
    assert "without the Edge TPU delegate" in checks["smoke"]["detail"]
    assert "CPU model" in checks["smoke"]["fix"]


def test_own_model_labels_and_image_with_an_expected_label() -> None:
    pytest.importorskip("tflite_runtime.interpreter")
    done = run_verify(
        "--model",
        str(TESTDATA / "mobilenet_v2_1.0_224_quant.tflite"),
        "--labels",
        str(TESTDATA / "imagenet_labels.txt"),
        "--image",
        str(TESTDATA / "parrot.jpg"),
        "--count",
        "2",
        "--expect",
        "tench, Tinca tinca",
    )
    document = json.loads(done.stdout)
    assert document["smoke"]["model"] == str(TESTDATA / "mobilenet_v2_1.0_224_quant.tflite")
    assert document["smoke"]["top"][0]["label"] == "macaw"
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["smoke"]["status"] == "fail"  # a wrong label is a failure
    assert "tench" in checks["smoke"]["detail"]
    assert done.returncode == 2


STAND_IN_DELEGATE = r"""
#include <stddef.h>
/* Stand-in for libedgetpu with no accelerator attached: the delegate entry points exist,
   creation reports an error and fails, as the real runtime does when no device is found. */
void *tflite_plugin_create_delegate(char **keys, char **values, size_t n,
                                    void (*report_error)(const char *)) {
    (void)keys; (void)values; (void)n;
    if (report_error) report_error("Could not find any Edge TPU device (stand-in runtime)");
    return NULL;
}
void tflite_plugin_destroy_delegate(void *delegate) { (void)delegate; }
"""


def test_delegate_that_finds_no_device_falls_back_to_the_cpu(tmp_path: Path) -> None:
    """A libedgetpu.so.1 stand-in that loads but finds no device (what the real runtime does
    with nothing plugged in): verify must explain it and still classify on the CPU."""
    pytest.importorskip("tflite_runtime.interpreter")
    import os
    import shutil

    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler to build the stand-in runtime")
    source = tmp_path / "standin.c"
    source.write_text(STAND_IN_DELEGATE)
    subprocess.run(
        [compiler, "-shared", "-fPIC", "-o", str(tmp_path / "libedgetpu.so.1"), str(source)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "LD_LIBRARY_PATH": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "verify", "--json", "--assets", str(TESTDATA), "--count", "2"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    document = json.loads(done.stdout)
    smoke = document["smoke"]
    assert smoke["device"] == "cpu"
    assert smoke["top"][0]["label"] == MACAW
    assert "Failed to load delegate" not in smoke["note"]  # translated, not raw
    assert smoke["note"].startswith(
        "no Edge TPU usable: the runtime loaded but found no Edge TPU (no accelerator attached)"
    )
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["smoke_edgetpu"]["status"] == "warn"
    assert "found no Edge TPU" in checks["smoke_edgetpu"]["detail"]
