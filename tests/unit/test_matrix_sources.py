"""Every fact in matrix.toml says where it was read and when; the TF pairing picks the
libedgetpu release by TensorFlow version."""

from __future__ import annotations

import datetime
import re
from typing import Any

import pytest

from provision.planning.matrix import choose_release, load_matrix, release_tag_for, resolve
from provision.planning.matrix_data import load_matrix_data
from provision.planning.targets import Choices, Target

# Rows that hold facts: each must carry `source` and `checked`.
_ROW_TABLES = ("releases", "python_runtimes", "runtime_sources", "ansible_core", "boards")
_SECTIONS = ("numpy_pypi", "pillow_pypi", "opencv_pip", "venv")


def _rows() -> list[tuple[str, dict[str, Any]]]:
    raw = load_matrix_data()
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, rel in raw["releases"].items():
        rows.append((f"releases.{name}", rel))
    for table in _ROW_TABLES[1:]:
        rows.extend((f"{table}[{i}]", row) for i, row in enumerate(raw[table]))
    rows.extend((name, raw[name]) for name in _SECTIONS)
    rows.extend((f"accelerators.{k}", v) for k, v in raw["accelerators"].items())
    rows.extend((f"runtime_variants.{k}", v) for k, v in raw["runtime_variants"].items())
    return rows


@pytest.mark.parametrize(("where", "row"), _rows(), ids=[w for w, _ in _rows()])
def test_every_fact_row_has_a_source_and_a_date_checked(where: str, row: dict[str, Any]) -> None:
    assert isinstance(row.get("source"), str) and len(row["source"]) > 10, where
    checked = row.get("checked")
    assert isinstance(checked, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", checked), where
    datetime.date.fromisoformat(checked)  # a real date


def test_the_tf_version_of_every_wheel_and_runtime_release_is_recorded() -> None:
    m = load_matrix()
    for wheel in m.wheels:
        assert re.match(r"\d+\.\d+\.\d+", wheel.tf), (wheel.package, wheel.version)
        if wheel.package == "tflite-runtime":  # tflite_runtime is versioned like TF itself
            assert wheel.tf == wheel.version
    for source in m.sources:
        for rel in source.releases:
            assert re.match(r"\d+\.\d+\.\d+$", rel.tf), rel.version
    litert = {w.version: w.tf for w in m.wheels if w.package == "ai-edge-litert"}
    assert litert == {"2.3.0": "2.22.0-dev", "2.1.0": "2.21.0-dev"}


def _wheel(package: str, version: str) -> Any:
    return next(w for w in load_matrix().wheels if (w.package, w.version) == (package, version))


def _community() -> Any:
    return next(s for s in load_matrix().sources if s.name == "community-deb")


def test_ai_edge_litert_takes_the_nearest_tf_at_or_below_its_own() -> None:
    chosen = choose_release(_community(), _wheel("ai-edge-litert", "2.3.0"), "bookworm")
    assert chosen is not None
    release, why = chosen
    assert (release.version, release.tf) == ("16.0tf2.19.1-1", "2.19.1")
    assert "nearest TF at or below" in why and "2.22.0-dev" in why


def test_tflite_runtime_2_14_pairs_only_with_2_17_1_and_names_frigates_pair() -> None:
    chosen = choose_release(_community(), _wheel("tflite-runtime", "2.14.0"), "bookworm")
    assert chosen is not None
    release, why = chosen
    assert release.version == "16.0tf2.17.1-1"
    assert "nearest TF above" in why
    assert "blakeblackshear/frigate" in why  # the known-good pair 2.17.1 + tflite_runtime 2.17.1


def test_a_release_built_for_the_wheels_own_tf_is_matched(monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    wheel = dataclasses.replace(_wheel("ai-edge-litert", "2.1.0"), tf="2.18.1")
    chosen = choose_release(_community(), wheel, "bookworm")
    assert chosen is not None
    assert chosen[0].version == "16.0tf2.18.1-1"
    assert chosen[1].startswith("matched")


def test_no_release_pairs_on_a_codename_it_does_not_list() -> None:
    assert choose_release(_community(), _wheel("ai-edge-litert", "2.3.0"), "buster") is None


def test_the_plan_says_which_pair_was_chosen_and_why() -> None:
    rel = load_matrix().releases["noble"]
    plan = resolve(Target("ubuntu", "noble", "aarch64", rel.python, rel.glibc), Choices())
    assert plan.runtime.deb_filename == "libedgetpu1-std_16.0tf2.19.1-1.ubuntu24.04_arm64.deb"
    assert "paired by TensorFlow version with ai-edge-litert 2.3.0" in plan.runtime.reason
    assert "its own ubuntu24.04 build for noble" in plan.runtime.reason


def test_resolute_gets_ai_edge_litert_for_cp314_on_the_ubuntu_24_04_build() -> None:
    rel = load_matrix().releases["resolute"]
    assert (rel.python, rel.glibc) == ("3.14", "2.43")
    plan = resolve(Target("ubuntu", "resolute", "aarch64", "3.14", "2.43"), Choices())
    assert (plan.python_runtime.package, plan.python_runtime.version) == ("ai-edge-litert", "2.3.0")
    assert plan.python_runtime.python_tag == "cp314"
    assert plan.runtime.deb_filename == "libedgetpu1-std_16.0tf2.19.1-1.ubuntu24.04_arm64.deb"
    assert "no resolute build" in plan.runtime.reason
    assert plan.numpy.source == "apt"  # python3-numpy 2.3.5 meets >=1.23.2


def test_release_tags() -> None:
    assert release_tag_for("16.0tf2.19.1-1") == "16.0TF2.19.1-1"
    assert release_tag_for("16.0") is None  # the apt release has no tag
    assert release_tag_for("9.9") is None
