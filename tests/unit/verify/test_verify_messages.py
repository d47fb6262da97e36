"""What verify says when the user's own files change the smoke test: an own --image without
--expect is still judged against the parrot's label (and verify says so, with how to set
one); an Edge TPU model given to the CPU path is named as such, never run there."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from verify_fakeroot import REPO, FakeRoot

from verify import assets, cli, smoke
from verify.errors import Cause

PARROT = assets.EXPECTED_LABEL  # 'Ara macao (Scarlet Macaw)'


# ---------------------------------------------------------------------------------------
# --image without --expect


def _fake_smoke(seen: dict[str, Any], label: str) -> Any:
    """smoke.run stood in: what the CLI asked for is kept, `label` comes out on top."""

    def run(module: Any, runtime: Any, asset: Any, options: smoke.SmokeOptions, **kw: Any) -> Any:
        seen.update(expect=options.expect, image=kw["image_file"], model=kw["cpu_model"])
        result = smoke.SmokeResult(
            device="cpu",
            runtime=dict(runtime),
            model=kw["cpu_model"],
            top=[{"label": label, "index": 1, "score": 0.9}],
            latency_ms={"first": 2.0, "median": 1.0, "p95": 1.5},
            note="no Edge TPU usable: stand-in; ran on the CPU",
        )
        if options.expect is not None:
            result.label_ok = label == options.expect
        return result

    return run


def _verify(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    root: FakeRoot,
    label: str,
    *args: str,
) -> tuple[dict[str, Any], dict[str, Any], str]:
    root.os_release("bookworm")
    seen: dict[str, Any] = {}
    monkeypatch.setattr(smoke, "run", _fake_smoke(seen, label))
    code = cli.main(["--json", "--root", str(root.path), "--user", "pi", *args])
    out, err = capsys.readouterr()
    document = json.loads(out)
    assert code == (2 if document["result"] == "fail" else 0)
    return seen, document, err


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    """Someone's own photo (the fake smoke run never decodes it)."""
    path = tmp_path / "raven.jpg"
    path.write_bytes(b"jpeg")
    return path


def test_own_image_without_expect_says_the_parrot_is_expected(
    fake_root: FakeRoot,
    image: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen, document, err = _verify(
        monkeypatch, capsys, fake_root, "Corvus corax", "--image", str(image)
    )
    assert seen["expect"] == PARROT and seen["image"] == str(image)
    said = f"the top-1 is expected to be the parrot's label, {PARROT!r}"
    assert said in err and "--expect LABEL" in err
    assert said in document["smoke"]["note"]
    check = {c["name"]: c for c in document["checks"]}["smoke"]
    assert check["status"] == "fail" and "expected 'Ara macao" in check["detail"]
    assert said in check["fix"] and "--expect LABEL" in check["fix"]
    assert "broken runtime" not in check["fix"]


def test_own_image_with_expect_or_own_model_is_not_told_about_the_parrot(
    fake_root: FakeRoot,
    image: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seen, document, err = _verify(
        monkeypatch, capsys, fake_root, "Corvus corax", "--image", str(image), "--expect",
        "Corvus corax",
    )  # fmt: skip
    assert seen["expect"] == "Corvus corax" and "parrot" not in err
    assert {c["name"]: c for c in document["checks"]}["smoke"]["status"] == "pass"
    model, labels = tmp_path / "own.tflite", tmp_path / "labels.txt"
    model.write_bytes(b"model")
    labels.write_text("0 a\n1 b\n")
    seen, document, err = _verify(
        monkeypatch, capsys, fake_root, "b", "--image", str(image), "--model", str(model),
        "--labels", str(labels),
    )  # fmt: skip
    assert seen["expect"] is None and "parrot" not in err
    assert "parrot" not in document["smoke"]["note"]


# ---------------------------------------------------------------------------------------
# An Edge TPU model on the CPU path


class Interpreter:
    created: list[str] = []  # noqa: RUF012 (a record of the calls)

    def __init__(self, model_path: str, experimental_delegates: Any = None) -> None:
        Interpreter.created.append(model_path)
        raise RuntimeError("Encountered unresolved custom op: edgetpu-custom-op.")


def _smoke(tmp_path: Path, model: str) -> smoke.SmokeResult:
    (tmp_path / "labels.txt").write_text("0 a\n1 b\n")
    (tmp_path / "img.jpg").write_bytes(b"jpeg")
    Interpreter.created = []
    cause = Cause("the Edge TPU runtime library libedgetpu.so.1 is not installed", "install", "")
    return smoke.run(
        SimpleNamespace(Interpreter=Interpreter),
        {"package": "fake", "version": "0"},
        lambda name: str(tmp_path / name),
        smoke.SmokeOptions(count=1),
        edgetpu_model=model,
        cpu_model=model,
        labels_file="labels.txt",
        image_file="img.jpg",
        delegate_loader=lambda module: (None, cause),
    )


def test_an_edgetpu_model_is_not_run_on_the_cpu(tmp_path: Path) -> None:
    (tmp_path / "bird_edgetpu.tflite").write_bytes(b"TFL3 ...")
    result = _smoke(tmp_path, "bird_edgetpu.tflite")
    assert Interpreter.created == []  # never handed to the CPU interpreter
    assert result.device is None and result.error is not None
    assert result.error.cause == (
        "bird_edgetpu.tflite is an Edge TPU model: it cannot run without the Edge TPU "
        "delegate, and no Edge TPU is usable (the Edge TPU runtime library libedgetpu.so.1 "
        "is not installed)"
    )
    assert "CPU model" in result.error.fix and "e.g. bird.tflite" in result.error.fix
    assert result.error.fix.endswith("make the Edge TPU usable: install")
    assert "unresolved custom op" not in result.note
    assert result.note.startswith("no Edge TPU usable: the Edge TPU runtime library")


def test_a_renamed_edgetpu_model_is_known_by_its_custom_op(tmp_path: Path) -> None:
    # The op name may straddle the 1 MiB read chunks.
    body = b"\0" * ((1 << 20) - 5) + smoke.EDGETPU_CUSTOM_OP + b"\0" * 10
    (tmp_path / "renamed.tflite").write_bytes(body)
    assert smoke.is_edgetpu_model(str(tmp_path / "renamed.tflite"))
    result = _smoke(tmp_path, "renamed.tflite")
    assert result.error is not None and "renamed.tflite is an Edge TPU model" in result.error.cause
    assert "e.g." not in result.error.fix  # no CPU name to guess from
    (tmp_path / "cpu.tflite").write_bytes(b"TFL3 no such op")
    assert not smoke.is_edgetpu_model(str(tmp_path / "cpu.tflite"))
    assert not smoke.is_edgetpu_model(str(tmp_path / "absent.tflite"))


@pytest.mark.skipif(
    not any(importlib.util.find_spec(m) for m in ("tflite_runtime", "ai_edge_litert")),
    reason="no inference runtime in this Python",
)
def test_python_m_verify_names_an_edgetpu_model_given_without_an_edge_tpu(
    tmp_path: Path,
) -> None:
    model = tmp_path / "own_edgetpu.tflite"
    model.write_bytes(b"not even a model: verify must not need to open it")
    labels, image = tmp_path / "labels.txt", tmp_path / "img.jpg"
    labels.write_text("0 a\n")
    image.write_bytes(b"jpeg")
    done = subprocess.run(
        [sys.executable, "-m", "verify", "--json", "--count", "1", "--model", str(model),
         "--labels", str(labels), "--image", str(image), "--expect", "a"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    document = json.loads(done.stdout)
    if document["smoke"]["device"] == "edgetpu":
        pytest.skip("this machine has a usable Edge TPU")
    assert done.returncode == 2
    check = {c["name"]: c for c in document["checks"]}["smoke"]
    assert "own_edgetpu.tflite is an Edge TPU model" in check["detail"]
    assert "without the Edge TPU delegate" in check["detail"]
    assert "e.g. own.tflite" in check["fix"]
