"""The bird smoke test: classify parrot.jpg on the Edge TPU, or on the CPU when none is usable."""

from __future__ import annotations

import ctypes
import math
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import configtxt, errors
from .errors import Cause

EDGETPU_LIBRARY = "libedgetpu.so.1"
#: The operator edgetpu_compiler puts in a model: the whole graph, run by the delegate.
EDGETPU_CUSTOM_OP = b"edgetpu-custom-op"
MIN_SCORE = 0.5  # observed 0.72-0.82 (CPU) and 0.76-0.78 (Edge TPU); uint8 steps of 1/256
SLOW_FACTOR = 3.0

# Reference figures (ms per inference, mobilenet_v2 224): Coral's benchmark CSVs for the
# Edge TPU, community measurements for a Pi 4 CPU.
EDGETPU_PI4_USB3_MS = 4.55
EDGETPU_USB2_MS = 10.61  # Pi 3B+, USB2 only
EDGETPU_X86_USB3_MS = 2.29
CPU_PI4_MS = 150.0  # upper end of 110-150 ms


@dataclass
class SmokeOptions:
    count: int = 10
    top_k: int = 3
    expect: str | None = None
    min_score: float = MIN_SCORE


@dataclass
class SmokeResult:
    device: str | None = None  # "edgetpu" | "cpu" | None (nothing ran)
    runtime: dict[str, str | None] = field(default_factory=dict)
    model: str | None = None
    top: list[dict[str, Any]] = field(default_factory=list)
    latency_ms: dict[str, float] | None = None
    expected_ms: float | None = None
    note: str = ""
    edgetpu_cause: Cause | None = None
    error: Cause | None = None
    label_ok: bool | None = None  # None: no expectation
    slow: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "runtime": self.runtime,
            "model": self.model,
            "top": self.top,
            "latency_ms": self.latency_ms,
            "expected_ms": self.expected_ms,
            "note": self.note,
            "edgetpu_error": None if self.edgetpu_cause is None else self.edgetpu_cause.cause,
            "error": None if self.error is None else self.error.cause,
        }


# ------------------------------------------------------------------ pure helpers


def read_labels(text: str) -> dict[int, str]:
    """Coral label files: `N label` / `N: label` lines, or one label per line."""
    labels: dict[int, str] = {}
    for row, line in enumerate(text.splitlines()):
        pair = re.split(r"[:\s]+", line.strip(), maxsplit=1)
        if len(pair) == 2 and pair[0].strip().isdigit():
            labels[int(pair[0])] = pair[1].strip()
        else:
            labels[row] = line.strip()
    return labels


class LabelsMismatch(ValueError):
    """The labels file does not name the model's output classes one for one."""

    def __init__(self, labels: int, classes: int, detail: str) -> None:
        super().__init__(f"{labels} labels for {classes} output classes ({detail})")
        self.labels = labels
        self.classes = classes
        self.detail = detail


def output_classes(detail: dict[str, Any]) -> int:
    """How many scores an output tensor holds per image (its shape without the batch)."""
    count = 1
    for size in list(detail["shape"])[1:]:
        count *= int(size)
    return count


def check_labels(labels: dict[int, str], classes: int) -> None:
    """Raise LabelsMismatch unless `labels` names exactly the indices 0..classes-1.

    Fewer labels would leave classes unnamed, more mean another model's file (often one
    shifted by a "background" class): either way the top label could be wrong.
    """
    named = {index for index, text in labels.items() if text}
    missing = [index for index in range(classes) if index not in named]
    beyond = sorted(index for index in named if index >= classes)
    if beyond:
        raise LabelsMismatch(len(named), classes, f"labels up to index {beyond[-1]}")
    if missing:
        shown = ", ".join(str(index) for index in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise LabelsMismatch(len(named), classes, f"no label for index {shown}{more}")


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def expected_latency(
    device: str, board: str | None, arch: str, usb_speed: str | None
) -> tuple[float | None, str]:
    """Reference ms per inference for this board and link, with where the figure comes from."""
    filters = configtxt.model_filters(board)
    try:
        speed = float(usb_speed) if usb_speed else None
    except ValueError:
        speed = None
    if device == "edgetpu":
        if speed is not None and speed < 5000:
            return EDGETPU_USB2_MS, "Coral reference, USB2 (Pi 3B+)"
        if speed is not None and "pi4" in filters:
            return EDGETPU_PI4_USB3_MS, "Coral reference, Pi 4B USB3"
        if speed is not None and board is None and arch == "x86_64":
            return EDGETPU_X86_USB3_MS, "Coral reference, x86_64 USB3"
        return None, "no reference figure for this board and link"
    if device == "cpu" and "pi4" in filters:
        return CPU_PI4_MS, "Pi 4 CPU, 110-150 ms"
    return None, "no reference figure for this board on the CPU"


def slow_cause(device: str, usb_speed: str | None, throttled: int | None) -> str:
    if device == "edgetpu" and usb_speed and usb_speed not in ("5000", "10000", "20000"):
        return "the accelerator is on a USB2 link"
    if throttled:
        return "the board is or was throttled (under-voltage or heat)"
    if device == "edgetpu":
        return "likely an under-powered USB port (use a powered hub) or CPU throttling"
    return "likely CPU throttling (heat, power) or other load"


def prepare_input(image_path: str, detail: dict[str, Any]) -> Any:
    import numpy as np
    from PIL import Image

    _, height, width, _ = (int(v) for v in detail["shape"])
    lanczos = getattr(Image, "Resampling", Image).LANCZOS
    with Image.open(image_path) as img:
        resized = img.convert("RGB").resize((width, height), lanczos)
    data = np.asarray(resized, dtype=np.uint8)
    dtype = detail["dtype"]
    if dtype == np.uint8:
        tensor = data
    elif dtype == np.int8:
        tensor = (data.astype(np.int16) - 128).astype(np.int8)
    else:
        tensor = ((data.astype(np.float32) - 127.5) / 127.5).astype(dtype)
    return np.expand_dims(tensor, axis=0)


def dequantize(raw: Any, detail: dict[str, Any]) -> Any:
    import numpy as np

    values = np.asarray(raw).reshape(-1)
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if scale:
        return (values.astype(np.float32) - float(zero_point)) * float(scale)
    return values.astype(np.float32)


def top_k(scores: Any, labels: dict[int, str], k: int) -> list[dict[str, Any]]:
    order = sorted(range(len(scores)), key=lambda i: float(scores[i]), reverse=True)[:k]
    return [
        {"label": labels.get(i, str(i)), "index": int(i), "score": round(float(scores[i]), 5)}
        for i in order
    ]


# ------------------------------------------------------------------ running


def load_edgetpu_delegate(module: Any) -> tuple[Any, Cause | None]:
    """The Edge TPU delegate, or the translated reason it is not usable."""
    try:
        ctypes.CDLL(EDGETPU_LIBRARY)  # a missing library then fails here, quietly
    except OSError as exc:
        return None, errors.translate_exception(exc)
    try:
        return module.load_delegate(EDGETPU_LIBRARY), None
    except Exception as exc:
        return None, errors.translate_exception(exc)


def classify(
    module: Any,
    model: str,
    image: str,
    labels: dict[int, str],
    count: int,
    k: int,
    delegate: Any = None,
) -> tuple[list[dict[str, Any]], list[float]]:
    """Run `model` once plus `count` times; returns top-k and per-run milliseconds."""
    delegates = [delegate] if delegate is not None else None
    interpreter = module.Interpreter(model_path=model, experimental_delegates=delegates)
    interpreter.allocate_tensors()
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]
    check_labels(labels, output_classes(output_detail))
    interpreter.set_tensor(input_detail["index"], prepare_input(image, input_detail))
    times: list[float] = []
    for _ in range(count + 1):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000.0)
    scores = dequantize(interpreter.get_tensor(output_detail["index"]), output_detail)
    return top_k(scores, labels, k), times


def run(
    module: Any,
    runtime: dict[str, str | None],
    asset: Callable[[str], str],
    options: SmokeOptions,
    *,
    edgetpu_model: str,
    cpu_model: str,
    labels_file: str,
    image_file: str,
    board: str | None = None,
    arch: str = "",
    usb_speed: str | None = None,
    throttled: int | None = None,
    delegate_loader: Callable[[Any], tuple[Any, Cause | None]] | None = None,
    refine: Callable[[Cause], Cause] | None = None,
) -> SmokeResult:
    """The smoke test. `asset(name)` returns a local path for a model/labels/image name
    (fetching and checking it); it may raise, and the error becomes the result's error."""
    result = SmokeResult(runtime=dict(runtime))
    if module is None:
        result.error = Cause("no inference runtime imports", "see the python_runtime check", "")
        result.note = "nothing ran: " + result.error.cause
        return result
    try:
        labels = read_labels(_read_text(asset(labels_file)))
        image = asset(image_file)
    except Exception as exc:
        result.error = errors.translate_exception(exc)
        result.note = "nothing ran: " + result.error.cause
        return result

    delegate, cause = (delegate_loader or load_edgetpu_delegate)(module)
    outcome: tuple[list[dict[str, Any]], list[float]] | None = None
    if delegate is not None:
        try:
            model_path = asset(edgetpu_model)
            outcome = classify(
                module, model_path, image, labels, options.count, options.top_k, delegate
            )
            result.device, result.model = "edgetpu", edgetpu_model
        except LabelsMismatch as exc:
            return _labels_failed(result, exc, labels_file, edgetpu_model)
        except Exception as exc:
            cause = errors.translate_exception(exc)
    if cause is not None and refine is not None:
        cause = refine(cause)
    result.edgetpu_cause = cause
    notes: list[str] = []
    if outcome is None:
        why = cause.cause if cause else "unknown"
        try:
            model_path = asset(cpu_model)
            if is_edgetpu_model(model_path):
                return _edgetpu_model_on_cpu(result, cpu_model, cause)
            notes.append(f"no Edge TPU usable: {why}; ran on the CPU")
            outcome = classify(module, model_path, image, labels, options.count, options.top_k)
            result.device, result.model = "cpu", cpu_model
        except LabelsMismatch as exc:
            return _labels_failed(result, exc, labels_file, cpu_model, notes)
        except Exception as exc:
            result.error = errors.translate_exception(exc)
            notes.append("CPU run failed: " + result.error.cause)
            result.note = "; ".join(notes)
            return result

    result.top, times = outcome
    later = times[1:] or times
    middle = median(later)
    result.latency_ms = {
        "first": round(times[0], 3),
        "median": round(middle, 3),
        "p95": round(percentile(later, 95), 3),
    }
    device = result.device or "cpu"
    result.expected_ms, basis = expected_latency(device, board, arch, usb_speed)
    if result.expected_ms is not None:
        notes.append(f"expected about {result.expected_ms} ms ({basis})")
        if middle > SLOW_FACTOR * result.expected_ms:
            result.slow = True
            notes.append(
                f"median {result.latency_ms['median']} ms is more than "
                f"{SLOW_FACTOR:g}x that: {slow_cause(device, usb_speed, throttled)}"
            )
    if options.expect is not None:
        best = result.top[0] if result.top else None
        result.label_ok = bool(
            best and best["label"] == options.expect and best["score"] >= options.min_score
        )
    result.note = "; ".join(notes)
    return result


def is_edgetpu_model(path: str) -> bool:
    """Whether a .tflite model is compiled for the Edge TPU: named ``*_edgetpu.tflite``, as
    edgetpu_compiler names it, or holding its ``edgetpu-custom-op`` (a renamed one)."""
    if os.path.basename(path).endswith("_edgetpu.tflite"):
        return True
    tail = b""
    try:
        with open(path, "rb") as handle:
            while True:
                chunk = handle.read(1 << 20)
                if not chunk:
                    return False
                if EDGETPU_CUSTOM_OP in tail + chunk:
                    return True
                tail = chunk[-len(EDGETPU_CUSTOM_OP) :]
    except OSError:
        return False


def _edgetpu_model_on_cpu(result: SmokeResult, model: str, cause: Cause | None) -> SmokeResult:
    """An Edge TPU model is all the CPU path was given: say so, instead of the runtime's
    "unresolved custom op"."""
    why = cause.cause if cause else "unknown"
    name = os.path.basename(model)
    cpu_name = (
        name[: -len("_edgetpu.tflite")] + ".tflite" if name.endswith("_edgetpu.tflite") else ""
    )
    fix = (
        "give --model the CPU model (the same model before edgetpu_compiler"
        + (f", e.g. {cpu_name}" if cpu_name else "")
        + "), or make the Edge TPU usable"
    )
    if cause is not None and cause.fix:
        fix += f": {cause.fix}"
    result.error = Cause(
        f"{name} is an Edge TPU model: it cannot run without the Edge TPU delegate, and no "
        f"Edge TPU is usable ({why})",
        fix,
        why,
    )
    result.note = f"no Edge TPU usable: {why}; nothing ran: {name} runs only on an Edge TPU"
    return result


def _labels_failed(
    result: SmokeResult,
    mismatch: LabelsMismatch,
    labels_file: str,
    model: str,
    notes: list[str] | None = None,
) -> SmokeResult:
    result.error = Cause(
        f"the labels file {labels_file} has {mismatch.labels} labels but the model {model} "
        f"has {mismatch.classes} output classes ({mismatch.detail})",
        "use the labels file made for this model (--labels), or the pinned smoke-test files",
        str(mismatch),
    )
    result.note = "; ".join([*(notes or []), "nothing classified: " + result.error.cause])
    return result


def _read_text(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()
