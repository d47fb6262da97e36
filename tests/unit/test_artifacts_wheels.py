"""The dependency walk of provision.artifacts.wheels on recorded pip reports (no network).

Each fake index answers like `pip install --dry-run --no-deps --report`: one item per
requested name, with the wheel's Requires-Dist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from provision.artifacts import wheels
from provision.artifacts.cache import ArtifactError

INDEX: dict[str, dict[str, Any]] = {
    "ai-edge-litert": {
        "version": "2.3.0",
        "requires": [
            "numpy>=1.23.2",
            "flatbuffers",
            "ml_dtypes",
            "backports.strenum; python_version < '3.11'",
            "tqdm[slack]",
            "lark; extra == 'model-utils'",
        ],
    },
    "flatbuffers": {"version": "25.12.19", "requires": []},
    "ml-dtypes": {
        "version": "0.6.0",
        "requires": ["numpy>=2.0.0", "numpy>=2.1.0; python_version >= '3.13'"],
    },
    "backports-strenum": {"version": "1.2.8", "requires": []},
    "tqdm": {
        "version": "4.70.1",
        "requires": [
            "colorama; platform_system == 'Windows'",
            "slack-sdk; extra == 'slack'",
            "armonly; platform_machine == 'armv7l'",
        ],
    },
    "slack-sdk": {"version": "3.0", "requires": []},
    "armonly": {"version": "1.0", "requires": []},
    "numpy": {"version": "2.2.0", "requires": []},
    "lark": {"version": "1.0", "requires": []},
}


class FakeIndex:
    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, spec: wheels.WheelSpec, reqs: list[str]) -> list[dict[str, Any]]:
        self.calls.append(list(reqs))
        items = []
        for line in reqs:
            name = canonicalize_name(Requirement(line).name)
            entry = INDEX[name]
            fname = f"{name.replace('-', '_')}-{entry['version']}-py3-none-any.whl"
            items.append(
                {
                    "metadata": {
                        "name": name,
                        "version": entry["version"],
                        "requires_dist": entry["requires"],
                    },
                    "download_info": {
                        "url": f"https://files.example/{fname}",
                        "archive_info": {"hashes": {"sha256": "ab" * 32}},
                    },
                }
            )
        return items


def _spec(python: str = "3.13", arch: str = "aarch64") -> wheels.WheelSpec:
    return wheels.WheelSpec(
        python, "cp" + python.replace(".", ""), (f"manylinux_2_27_{arch}",), arch
    )


def test_numpy_is_left_out_and_every_requirement_on_it_is_reported() -> None:
    fake = FakeIndex()
    res = wheels.resolve(_spec(), ["ai-edge-litert==2.3.0"], exclude=["numpy"], run_pip=fake)
    names = [w.name for w in res.wheels]
    assert "numpy" not in names
    assert names == sorted(["ai-edge-litert", "flatbuffers", "ml-dtypes", "tqdm", "slack-sdk"])
    assert res.excluded_by["ml-dtypes"] == ["numpy>=2.0.0", "numpy>=2.1.0"]
    assert res.excluded_by["ai-edge-litert"] == ["numpy>=1.23.2"]
    assert all("numpy" not in r for call in fake.calls for r in call)
    assert res.required_by["flatbuffers"] == {"ai-edge-litert"}
    assert res.required_by["ai-edge-litert"] == {""}


def test_markers_are_evaluated_for_the_target_not_the_controller() -> None:
    old = wheels.resolve(
        _spec("3.9", "armv7l"), ["ai-edge-litert"], exclude=["numpy"], run_pip=FakeIndex()
    )
    names = {w.name for w in old.wheels}
    assert "backports-strenum" in names  # python_version < '3.11' on a 3.9 target
    assert "armonly" in names  # platform_machine == 'armv7l'
    assert "numpy>=2.1.0" not in old.excluded_by["ml-dtypes"]  # python >= 3.13 only
    assert "colorama" not in names and "lark" not in names  # Windows / unrequested extra


def test_numpy_from_pip_is_downloaded() -> None:
    res = wheels.resolve(_spec(), ["ai-edge-litert"], run_pip=FakeIndex())
    assert "numpy" in {w.name for w in res.wheels}
    assert res.excluded_requirements == []


def test_no_requirements_means_no_pip_run() -> None:
    fake = FakeIndex()
    assert wheels.resolve(_spec(), [], exclude=["numpy"], run_pip=fake).wheels == []
    assert fake.calls == []


def test_a_non_wheel_is_refused() -> None:
    def sdist(spec: wheels.WheelSpec, reqs: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {"name": "x", "version": "1"},
                "download_info": {"url": "https://files.example/x-1.tar.gz"},
            }
        ]

    with pytest.raises(ArtifactError, match="not a wheel"):
        wheels.resolve(_spec(), ["x"], run_pip=sdist)


def test_pip_command_passes_every_platform_tag_and_the_target_python() -> None:
    spec = wheels.WheelSpec(
        "3.11",
        "cp311",
        ("manylinux_2_34_aarch64", "manylinux2014_aarch64"),
        "aarch64",
        extra_index_url="https://www.piwheels.org/simple",
    )
    cmd = wheels.pip_command(spec, ["tflite-runtime==2.14.0"], report=Path("r"))
    assert cmd.count("--platform") == 2
    assert cmd[cmd.index("--python-version") + 1] == "3.11"
    assert cmd[cmd.index("--abi") + 1] == "cp311"
    assert "--only-binary=:all:" in cmd and "--no-deps" in cmd and "--isolated" in cmd
    assert cmd[cmd.index("--extra-index-url") + 1] == "https://www.piwheels.org/simple"
    assert cmd[-1] == "tflite-runtime==2.14.0"


def test_pip_failure_explains_platform_and_index() -> None:
    spec = _spec("3.12", "armv7l")
    err = wheels._pip_error(
        spec,
        ["tflite-runtime==2.14.0"],
        "ERROR: Could not find a version that satisfies the requirement "
        "tflite-runtime==2.14.0 (from versions: none)\n",
    )
    text = str(err)
    assert "python 3.12" in text and "manylinux_2_27_armv7l" in text
    assert "pypi.org/simple" in text and "from versions: none" in text


def test_unreachable_index_is_named_with_its_setting() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = wheels.WheelSpec(
        "3.11",
        "cp311",
        ("manylinux2014_x86_64",),
        "x86_64",
        index_url=f"https://127.0.0.1:{port}/simple",
    )
    with pytest.raises(ArtifactError) as err:
        wheels.resolve(spec, ["tflite-runtime==2.14.0"])
    text = str(err.value)
    assert f"127.0.0.1:{port}" in text and "coralpi_pip_index_url" in text
    assert "cannot be reached" in text
