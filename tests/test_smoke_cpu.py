"""The real smoke test on this machine's CPU: real tflite runtime, real Coral model, real parrot.

No Edge TPU is attached here, so verify must say so and classify on the CPU.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTDATA = REPO.parent / "shared" / "testdata" / "coral"
MACAW = "Ara macao (Scarlet Macaw)"

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason="Coral test data not present")


def run_verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "verify", "--json", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)


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
    done = run_verify("--model", str(TESTDATA / "mobilenet_v2_1.0_224_inat_bird_quant_edgetpu"
                                                 ".tflite"),
                      "--labels", str(TESTDATA / "inat_bird_labels.txt"),
                      "--image", str(TESTDATA / "parrot.jpg"), "--count", "1")
    assert done.returncode == 2
    document = json.loads(done.stdout)
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["smoke"]["status"] == "fail"
    assert "without the Edge TPU delegate" in checks["smoke"]["detail"]
    assert "CPU model" in checks["smoke"]["fix"]


def test_own_model_labels_and_image_with_an_expected_label() -> None:
    pytest.importorskip("tflite_runtime.interpreter")
    done = run_verify("--model", str(TESTDATA / "mobilenet_v2_1.0_224_quant.tflite"),
                      "--labels", str(TESTDATA / "imagenet_labels.txt"),
                      "--image", str(TESTDATA / "parrot.jpg"), "--count", "2",
                      "--expect", "tench, Tinca tinca")
    document = json.loads(done.stdout)
    assert document["smoke"]["model"] == str(TESTDATA / "mobilenet_v2_1.0_224_quant.tflite")
    assert document["smoke"]["top"][0]["label"] == "macaw"
    checks = {c["name"]: c for c in document["checks"]}
    assert checks["smoke"]["status"] == "fail"  # a wrong label is a failure
    assert "tench" in checks["smoke"]["detail"]
    assert done.returncode == 2
