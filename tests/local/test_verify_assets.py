"""Smoke-test assets over real HTTP (a server on 127.0.0.1 started by the test), sha256-pinned."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from verify import assets

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO.parent / "shared" / "testdata" / "coral"

pytestmark = pytest.mark.skipif(not TESTDATA.is_dir(), reason="Coral test data not present")


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP mirror on loopback serving the real files (linked) plus corrupted copies."""
    served = tmp_path / "served"
    good = served / "good"
    bad = served / "bad"
    good.mkdir(parents=True)
    bad.mkdir()
    for name in assets.SMOKE_FILES:
        (good / name).symlink_to(TESTDATA / name)
        (bad / name).symlink_to(TESTDATA / name)
    parrot = bytearray((TESTDATA / "parrot.jpg").read_bytes())
    parrot[1000] ^= 0xFF  # same size, one byte flipped
    (bad / "parrot.jpg").unlink()
    (bad / "parrot.jpg").write_bytes(bytes(parrot))
    (bad / assets.LABELS).unlink()
    (bad / assets.LABELS).write_bytes((TESTDATA / assets.LABELS).read_bytes() + b"extra\n")
    handler = functools.partial(_QuietHandler, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", tmp_path
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_download_checks_and_caches(mirror: tuple[str, Path]) -> None:
    url, tmp = mirror
    cache = tmp / "cache"
    store = assets.AssetStore(base_url=url + "/good", cache_dir=str(cache))
    path = store.path(assets.IMAGE)
    pinned = assets.PINNED[assets.IMAGE]
    assert path == str(cache / pinned.commit / assets.IMAGE)
    assert assets.sha256_of(path) == pinned.sha256
    # a second store uses the cache without the network
    offline = assets.AssetStore(base_url="http://127.0.0.1:9/unreachable", cache_dir=str(cache))
    assert offline.path(assets.IMAGE) == path


def test_corrupt_download_is_refused_and_not_cached(mirror: tuple[str, Path]) -> None:
    url, tmp = mirror
    cache = tmp / "cache"
    store = assets.AssetStore(base_url=url + "/bad", cache_dir=str(cache))
    with pytest.raises(assets.AssetError, match=r"sha256 .* refused"):
        store.path(assets.IMAGE)
    with pytest.raises(assets.AssetError, match="more than the pinned"):
        store.path(assets.LABELS)
    with pytest.raises(assets.AssetError, match="HTTP 404"):
        store.path("owl.jpg")  # pinned, but this mirror does not hold it
    leftovers = [p for p in cache.rglob("*") if p.is_file()]
    assert leftovers == []


def test_damaged_cache_entry_is_fetched_again(mirror: tuple[str, Path]) -> None:
    url, tmp = mirror
    cache = tmp / "cache"
    pinned = assets.PINNED[assets.LABELS]
    entry = cache / pinned.commit / assets.LABELS
    entry.parent.mkdir(parents=True)
    entry.write_text("damaged")
    store = assets.AssetStore(base_url=url + "/good", cache_dir=str(cache))
    assert store.path(assets.LABELS) == str(entry)
    assert assets.sha256_of(str(entry)) == pinned.sha256


def test_assets_dir_with_a_wrong_file_is_refused(tmp_path: Path) -> None:
    local = tmp_path / "assets"
    local.mkdir()
    (local / assets.IMAGE).write_bytes(b"\xff\xd8 not the parrot")
    store = assets.AssetStore(assets_dir=str(local), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(assets.AssetError, match="refusing"):
        store.path(assets.IMAGE)
    with pytest.raises(assets.AssetError, match="not in --assets"):
        store.path(assets.LABELS)
    good = assets.AssetStore(assets_dir=str(TESTDATA), cache_dir=str(tmp_path / "cache"))
    assert good.path(assets.LABELS) == str(TESTDATA / assets.LABELS)


def test_urls() -> None:
    pinned = assets.PINNED[assets.EDGETPU_MODEL]
    assert assets.url_for(pinned, None) == (
        "https://raw.githubusercontent.com/google-coral/test_data/"
        "168d89da6ae4132e5e4bda90b76fc128cd1fe560/"
        "mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite"
    )
    assert assets.url_for(pinned, "http://mirror/coral/") == (
        "http://mirror/coral/mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite"
    )
    assert assets.url_for(pinned, "http://m/{commit}/x/{file}") == (
        f"http://m/{pinned.commit}/x/{pinned.file}"
    )


def test_cache_location_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert assets.default_cache_dir() == str(tmp_path / "coralpi" / "assets")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert assets.default_cache_dir() == str(tmp_path / "home" / ".cache" / "coralpi" / "assets")


def _verify(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "verify", "--json", "--count", "1", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_verify_downloads_from_a_mirror(mirror: tuple[str, Path]) -> None:
    pytest.importorskip("tflite_runtime.interpreter")
    url, tmp = mirror
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp / "xdg")}
    done = _verify("--assets-url", url + "/good", env=env)
    document = json.loads(done.stdout)
    assert document["smoke"]["top"][0]["label"] == assets.EXPECTED_LABEL
    cached = {p.name for p in (tmp / "xdg" / "coralpi" / "assets").rglob("*") if p.is_file()}
    # the Edge TPU model is only fetched when the delegate loads (it cannot here)
    assert cached == {assets.CPU_MODEL, assets.LABELS, assets.IMAGE}

    refused = _verify(
        "--assets-url", url + "/bad", env={**env, "XDG_CACHE_HOME": str(tmp / "xdg2")}
    )
    assert refused.returncode == 2
    checks = {c["name"]: c for c in json.loads(refused.stdout)["checks"]}
    assert checks["smoke"]["status"] == "fail"
    assert "refused" in checks["smoke"]["detail"]
