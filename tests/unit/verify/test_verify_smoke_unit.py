"""The smoke test's logic against a stand-in interpreter module (the real one runs in
tests/local/test_smoke_cpu.py)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pytest
from PIL import Image

from verify import checks, smoke
from verify.errors import Cause
from verify.facts import SystemFacts

LABELS = "0 background\n1 Corvus corax\n2 Ara macao (Scarlet Macaw)\n"


class FakeInterpreter:
    created: ClassVar[list[tuple[str, list[Any] | None]]] = []
    fail_with_delegate: ClassVar[str | None] = None

    def __init__(self, model_path: str, experimental_delegates: list[Any] | None = None):
        self.model_path = model_path
        self.delegates = experimental_delegates
        self.input: Any = None
        FakeInterpreter.created.append((model_path, experimental_delegates))

    def allocate_tensors(self) -> None:
        if "edgetpu" in self.model_path and not self.delegates:
            raise RuntimeError("Encountered unresolved custom op: edgetpu-custom-op.")
        if self.delegates and FakeInterpreter.fail_with_delegate:
            raise RuntimeError(FakeInterpreter.fail_with_delegate)

    def get_input_details(self) -> list[dict[str, Any]]:
        return [
            {
                "index": 0,
                "shape": np.array([1, 8, 6, 3]),
                "dtype": np.uint8,
                "quantization": (0.0078125, 128),
            }
        ]

    def get_output_details(self) -> list[dict[str, Any]]:
        return [
            {
                "index": 1,
                "shape": np.array([1, 3]),
                "dtype": np.uint8,
                "quantization": (0.00390625, 0),
            }
        ]

    def set_tensor(self, index: int, value: Any) -> None:
        self.input = value

    def invoke(self) -> None:
        assert self.input is not None and self.input.shape == (1, 8, 6, 3)

    def get_tensor(self, index: int) -> Any:
        # red image -> the macaw wins; anything else -> the raven
        red = self.input[0, :, :, 0].mean() > 200 and self.input[0, :, :, 1].mean() < 50
        return np.array([[10, 30, 200] if red else [10, 200, 30]], dtype=np.uint8)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    Image.new("RGB", (64, 48), (230, 20, 20)).save(tmp_path / "red.jpg")
    Image.new("RGB", (64, 48), (20, 20, 230)).save(tmp_path / "blue.jpg")
    (tmp_path / "labels.txt").write_text(LABELS)
    (tmp_path / "m_edgetpu.tflite").write_bytes(b"tpu")
    (tmp_path / "m.tflite").write_bytes(b"cpu")
    FakeInterpreter.created = []
    FakeInterpreter.fail_with_delegate = None
    return {p.name: str(p) for p in tmp_path.iterdir()}


def _run(
    files: dict[str, str], loader: Any, image: str = "red.jpg", **kwargs: Any
) -> smoke.SmokeResult:
    module = SimpleNamespace(Interpreter=FakeInterpreter)
    options = smoke.SmokeOptions(count=5, top_k=2, expect="Ara macao (Scarlet Macaw)")
    return smoke.run(
        module,
        {"package": "fake", "version": "0"},
        files.__getitem__,
        options,
        edgetpu_model="m_edgetpu.tflite",
        cpu_model="m.tflite",
        labels_file="labels.txt",
        image_file=image,
        delegate_loader=loader,
        **kwargs,
    )


def test_runs_on_the_edgetpu_when_the_delegate_loads(files: dict[str, str]) -> None:
    delegate = object()
    result = _run(
        files,
        lambda module: (delegate, None),
        board="Raspberry Pi 4 Model B",
        arch="aarch64",
        usb_speed="5000",
    )
    assert result.device == "edgetpu" and result.model == "m_edgetpu.tflite"
    assert FakeInterpreter.created == [(files["m_edgetpu.tflite"], [delegate])]
    assert result.top[0] == {"label": "Ara macao (Scarlet Macaw)", "index": 2, "score": 0.78125}
    assert len(result.top) == 2 and result.label_ok
    assert result.expected_ms == smoke.EDGETPU_PI4_USB3_MS
    assert result.latency_ms is not None and set(result.latency_ms) == {"first", "median", "p95"}


def test_falls_back_to_the_cpu_and_says_why(files: dict[str, str]) -> None:
    cause = Cause("the Edge TPU runtime library libedgetpu.so.1 is not installed", "fix", "")
    result = _run(files, lambda module: (None, cause))
    assert result.device == "cpu" and result.model == "m.tflite"
    assert result.note.startswith("no Edge TPU usable: the Edge TPU runtime library")
    assert result.edgetpu_cause is cause
    assert [m for m, _ in FakeInterpreter.created] == [files["m.tflite"]]


def test_model_for_a_newer_runtime_falls_back_with_the_translated_cause(
    files: dict[str, str],
) -> None:
    FakeInterpreter.fail_with_delegate = (
        "Package requires runtime version (14), which is newer than this runtime version (13)."
    )
    result = _run(files, lambda module: (object(), None))
    assert result.device == "cpu"
    assert result.edgetpu_cause is not None and "version 14" in result.edgetpu_cause.cause


def test_wrong_label_is_flagged(files: dict[str, str]) -> None:
    result = _run(files, lambda module: (None, None), image="blue.jpg")
    assert result.top[0]["label"] == "Corvus corax" and result.label_ok is False


def test_a_missing_asset_is_an_error_not_a_crash(files: dict[str, str]) -> None:
    result = _run(files, lambda module: (None, None), image="absent.jpg")
    assert result.device is None and result.error is not None
    no_runtime = smoke.run(
        None,
        {},
        files.__getitem__,
        smoke.SmokeOptions(),
        edgetpu_model="",
        cpu_model="",
        labels_file="",
        image_file="",
    )
    assert no_runtime.error is not None and no_runtime.device is None


def test_slow_runs_are_flagged_with_a_cause(
    files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(smoke, "EDGETPU_USB2_MS", 1e-6)
    result = _run(
        files,
        lambda module: (object(), None),
        usb_speed="480",
        board="Raspberry Pi 3 Model B Plus Rev 1.3",
    )
    assert result.slow and "USB2" in result.note


def test_helpers() -> None:
    assert smoke.read_labels("a\nb\n") == {0: "a", 1: "b"}
    assert smoke.read_labels("3: x y\n7  z\n") == {3: "x y", 7: "z"}
    values = [float(v) for v in range(1, 21)]
    assert smoke.percentile(values, 95) == 19.0
    assert smoke.median([3.0, 1.0, 2.0]) == 2.0 and smoke.median([1.0, 2.0]) == 1.5
    assert smoke.expected_latency("edgetpu", None, "x86_64", "5000")[0] == 2.29
    assert smoke.expected_latency("edgetpu", "Raspberry Pi 4 Model B", "aarch64", "480")[0] == (
        10.61
    )
    assert smoke.expected_latency("cpu", "Raspberry Pi 4 Model B", "aarch64", None)[0] == 150.0
    assert smoke.expected_latency("cpu", None, "x86_64", None)[0] is None
    assert smoke.expected_latency("edgetpu", "Raspberry Pi 5 Model B", "aarch64", "5000")[0] is (
        None
    )
    deq = smoke.dequantize(np.array([[128, 0]], dtype=np.uint8), {"quantization": (0.5, 128)})
    assert deq.tolist() == [0.0, -64.0]


# ------------------------------------------------------------------ labels vs. model


@pytest.mark.parametrize(
    ("labels", "count", "detail"),
    [
        ("0 background\n1 Corvus corax\n", 2, "no label for index 2"),
        ("background\nCorvus corax\n", 2, "no label for index 2"),
        ("0 background\n2 Ara macao (Scarlet Macaw)\n", 2, "no label for index 1"),
        (LABELS + "3 Pica pica\n", 4, "labels up to index 3"),
        ("", 0, "no label for index 0, 1, 2"),
    ],
)
@pytest.mark.parametrize("delegate", [True, False], ids=["edgetpu", "cpu"])
def test_labels_that_do_not_fit_the_model_fail_clearly(
    files: dict[str, str], labels: str, count: int, detail: str, delegate: bool
) -> None:
    Path(files["labels.txt"]).write_text(labels)
    loader = (lambda module: (object(), None)) if delegate else (lambda module: (None, None))
    result = _run(files, loader)
    model = "m_edgetpu.tflite" if delegate else "m.tflite"
    assert result.device is None and result.top == [] and result.latency_ms is None
    assert result.error is not None
    assert result.error.cause == (
        f"the labels file labels.txt has {count} labels but the model {model} "
        f"has 3 output classes ({detail})"
    )
    assert "--labels" in result.error.fix
    assert result.error.cause in result.note
    judged = {c.name: c for c in checks.smoke_checks(result, SystemFacts(), "Ara macao")}
    assert judged["smoke"].status == "fail"
    assert judged["smoke"].detail == "smoke test failed: " + result.error.cause


def test_labels_check_helpers() -> None:
    assert smoke.output_classes({"shape": np.array([1, 965])}) == 965
    assert smoke.output_classes({"shape": [1, 1, 1, 1001]}) == 1001
    smoke.check_labels({0: "a", 1: "b", 2: "c"}, 3)
    smoke.check_labels({0: "a", 1: "b", 2: ""}, 2)  # a trailing blank line is no label
    with pytest.raises(smoke.LabelsMismatch) as raised:
        smoke.check_labels({i: str(i) for i in range(1000)}, 1001)  # no "background"
    assert (raised.value.labels, raised.value.classes) == (1000, 1001)
    assert "no label for index 1000" in str(raised.value)
    with pytest.raises(smoke.LabelsMismatch, match=r"index 0, 1, 2, 3, 4 and 5 more"):
        smoke.check_labels({}, 10)
