"""The lock file format: round trip, byte stability, refusal of malformed files."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest

from provision.artifacts import lockfile
from provision.artifacts.lockfile import Artifact, Lock, LockError, PlatformInputs, PlatformLock

SHA_A = "a" * 64
SHA_B = "0123456789abcdef" * 4


def _inputs(arch: str = "aarch64") -> PlatformInputs:
    return PlatformInputs(
        codename="bookworm",
        arch=arch,
        python="3.11",
        opencv="apt",
        python_tag="cp311",
        platform_tags=(f"manylinux_2_34_{arch}", f"manylinux2014_{arch}"),
        pip_requirements=("tflite-runtime==2.14.0",),
        numpy_source="apt",
        pip_index_url="",
        runtime_source="community-deb",
        runtime_debs=("libedgetpu1-max_x.deb", "libedgetpu1-std_x.deb"),
    )


def _lock() -> Lock:
    plat = PlatformLock(
        _inputs(),
        (
            Artifact(
                "deb",
                "libedgetpu1-std_x.deb",
                "16.0",
                "https://m/std.deb",
                SHA_B,
                10,
                'runtime: "quoted" reason \\ with backslash',
            ),
            Artifact(
                "wheel",
                "tflite_runtime-2.14.0-cp311-cp311-manylinux_2_34_aarch64.whl",
                "2.14.0",
                "https://files.example/t.whl",
                SHA_A,
                123,
                "python_runtime: é",
            ),
        ),
    )
    shared = (
        Artifact("asset", "parrot.jpg", "104342d2", "https://a/parrot.jpg", SHA_B, 5, "verify"),
    )
    return Lock(platforms={plat.id: plat}, shared=shared)


def test_round_trip_gives_equal_lock_and_equal_bytes() -> None:
    lock = _lock()
    text = lockfile.render(lock)
    again = lockfile.parse(text)
    assert again.platforms == lock.platforms
    assert set(again.shared) == set(lock.shared)
    assert lockfile.render(again) == text


def test_render_is_valid_toml_with_sorted_artifacts() -> None:
    data = tomllib.loads(lockfile.render(_lock()))
    kinds = [a["kind"] for a in data["platform"][0]["artifact"]]
    assert kinds == ["wheel", "deb"]  # fixed kind order, whatever the input order
    assert data["platform"][0]["id"] == "bookworm/aarch64/python3.11/opencv-apt"
    assert data["shared"][0]["sha256"] == SHA_B


def test_platform_order_does_not_change_the_bytes() -> None:
    a, b = PlatformLock(_inputs("aarch64"), ()), PlatformLock(_inputs("armv7l"), ())
    one = Lock(platforms={a.id: a, b.id: b})
    two = Lock(platforms={b.id: b, a.id: a})
    assert lockfile.render(one) == lockfile.render(two)


def test_write_if_changed_leaves_an_unchanged_file_alone(tmp_path: Path) -> None:
    path = tmp_path / "coralpi.lock"
    assert lockfile.write_if_changed(path, _lock()) is True
    old = path.stat()
    os.utime(path, ns=(old.st_atime_ns, old.st_mtime_ns - 10_000_000_000))
    before = path.stat().st_mtime_ns
    assert lockfile.write_if_changed(path, lockfile.read(path)) is False
    assert path.stat().st_mtime_ns == before
    assert path.stat().st_ino == old.st_ino
    changed = _lock()
    changed.shared = ()
    assert lockfile.write_if_changed(path, changed) is True
    assert "parrot.jpg" not in path.read_text()
    assert oct(path.stat().st_mode & 0o777) == oct(old.st_mode & 0o777)


def test_pins_map_urls_to_hashes() -> None:
    pins = _lock().pins()
    assert pins["https://m/std.deb"] == SHA_B
    assert pins["https://files.example/t.whl"] == SHA_A


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda t: t.replace("version = 1", "version = 7"), "lock version 7"),
        (lambda t: t.replace(SHA_A, "zz" * 32), "not a sha256"),
        (lambda t: t.replace("size = 123", 'size = "123"'), "`size`"),
        (lambda t: t.replace('kind = "wheel"', 'kind = "tarball"'), "unknown artifact kind"),
        (lambda t: t.replace('id = "bookworm/aarch64', 'id = "bullseye/aarch64'), "does not match"),
        (lambda t: t + "\n[[oops", "not valid TOML"),
    ],
)
def test_malformed_locks_are_refused(mutate: object, message: str) -> None:
    text = lockfile.render(_lock())
    assert callable(mutate)
    with pytest.raises(LockError, match=message):
        lockfile.parse(mutate(text))


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a\\u0000b.jpg", "x\\nparrot.jpg", ".hidden", "a b.jpg", "..\\\\x"]
)
def test_artifact_names_must_be_plain_file_names(name: str) -> None:
    text = lockfile.render(_lock()).replace('name = "parrot.jpg"', f'name = "{name}"')
    with pytest.raises(LockError, match="plain file name"):
        lockfile.parse(text)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://u:t0ken@files.example/t.whl", "carries a login"),
        ("https://T0KEN@files.example/t.whl", "carries a login"),
        ("ftp://files.example/t.whl", "not an https://"),
        ("https://files.example/t.whl\\nTrusted: yes", "not an https://"),
    ],
)
def test_lock_urls_hold_no_login_and_nothing_odd(url: str, message: str) -> None:
    text = lockfile.render(_lock()).replace("https://files.example/t.whl", url)
    with pytest.raises(LockError, match=message) as err:
        lockfile.parse(text)
    assert "t0ken" not in str(err.value) and "T0KEN" not in str(err.value)


def test_a_platform_twice_is_refused() -> None:
    text = lockfile.render(_lock())
    platform = text[text.index("[[platform]]") :]
    with pytest.raises(LockError, match="in the lock twice"):
        lockfile.parse(text + "\n" + platform)


def test_pip_requirements_are_cross_checked_against_the_wheels() -> None:
    text = lockfile.render(_lock())
    assert lockfile.parse(text).platforms  # tflite-runtime==2.14.0 has its wheel
    wrong = text.replace('"tflite-runtime==2.14.0"', '"tflite-runtime==2.17.1"')
    with pytest.raises(LockError, match=r"tflite-runtime==2.17.1 has no matching wheel.*2\.14\.0"):
        lockfile.parse(wrong)
    extra = text.replace('"tflite-runtime==2.14.0",', '"tflite-runtime==2.14.0",\n    "pillow",')
    with pytest.raises(LockError, match="pillow has no matching wheel"):
        lockfile.parse(extra)
    # numpy from Debian needs no wheel; from pip it does.
    numpy = extra.replace('"pillow"', '"numpy<2"')
    assert lockfile.parse(numpy).platforms
    with pytest.raises(LockError, match="numpy<2 has no matching wheel"):
        lockfile.parse(numpy.replace('numpy_source = "apt"', 'numpy_source = "pip"'))


def test_missing_lock_says_how_to_create_it(tmp_path: Path) -> None:
    with pytest.raises(LockError, match="coralpi lock"):
        lockfile.read(tmp_path / "nope.lock")


def test_wheel_file_name_is_unquoted_from_the_index_url() -> None:
    from provision.artifacts.wheels import _wheel_from_report

    wheel = _wheel_from_report(
        {
            "metadata": {"name": "opencv-python-headless", "version": "4.11.0.86+standin"},
            "download_info": {
                "url": "http://127.0.0.1:9/simple/x/opencv_python_headless-4.11.0.86%2Bstandin-cp311-cp311-linux_armv7l.whl#sha256=ab",
                "archive_info": {"hashes": {"sha256": "AB"}},
            },
        }
    )
    assert wheel.filename == "opencv_python_headless-4.11.0.86+standin-cp311-cp311-linux_armv7l.whl"
    assert wheel.sha256 == "ab"
