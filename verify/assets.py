"""Smoke-test assets: commit-pinned upstream files, checked by size and sha256.

Taken from `--assets DIR` (what the controller pushed) or downloaded once into a cache
(`$XDG_CACHE_HOME/coralpi/assets`, else `~/.cache/coralpi/assets`). A file whose bytes do not
match the pinned sha256 is refused, never used.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass

UPSTREAM_URL = "https://raw.githubusercontent.com/google-coral/test_data/{commit}/{file}"
_OLD = "104342d2d3480b3e66203073dac24f4e2dbb4c41"
_NEW = "168d89da6ae4132e5e4bda90b76fc128cd1fe560"


@dataclass(frozen=True)
class Asset:
    file: str
    size: int
    sha256: str
    commit: str


PINNED: dict[str, Asset] = {
    asset.file: asset
    for asset in (
        Asset(
            "mobilenet_v2_1.0_224_inat_bird_quant.tflite",
            3579500,
            "350fcd8cf1df1560060d464595dfed8b174b05792788052896004848d9ad04f9",
            _OLD,
        ),
        Asset(
            "mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite",
            4105964,
            "8bcc4b9ec9c417835f7c63c995705b535dc56245deb42830ef71ed2e8ef18928",
            _NEW,
        ),
        Asset(
            "inat_bird_labels.txt",
            37146,
            "a16108dfe3f8daff015b87a97ab6a17e717b9b1bccd719f6d8f747746d7b9277",
            _OLD,
        ),
        Asset(
            "parrot.jpg",
            596977,
            "a8fba9e7e29439fa414c13129aad661f2289ff891231920a7c33641b076f1833",
            _OLD,
        ),
        Asset(
            "mobilenet_v2_1.0_224_quant.tflite",
            3610798,
            "7aad0c74c5e3c06e5eb3c827e13304fdd68a83da6087d92ee169c24ff9fd4776",
            _OLD,
        ),
        Asset(
            "mobilenet_v2_1.0_224_quant_edgetpu.tflite",
            4090478,
            "93f21e950980fe452c7e9e108744d1a2e423a2cfd166235078400f88c758ea67",
            _NEW,
        ),
        Asset(
            "imagenet_labels.txt",
            21686,
            "b8aaeb5630c62626a7d124a05c0e14230a7ffdd2136a31d0190a4fb71c1d82f1",
            _OLD,
        ),
        Asset(
            "owl.jpg",
            155944,
            "ea9a0e3943bbd0acaeb472a6e66e777d13cf76646f9e42e84cafa931cc8a5bf7",
            _OLD,
        ),
    )
}

CPU_MODEL = "mobilenet_v2_1.0_224_inat_bird_quant.tflite"
EDGETPU_MODEL = "mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite"
LABELS = "inat_bird_labels.txt"
IMAGE = "parrot.jpg"
EXPECTED_LABEL = "Ara macao (Scarlet Macaw)"
SMOKE_FILES = (CPU_MODEL, EDGETPU_MODEL, LABELS, IMAGE)


class AssetError(Exception):
    """An asset is missing, corrupt, or could not be downloaded."""


def default_cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "coralpi", "assets")


def sha256_of(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_file(path: str, asset: Asset) -> None:
    """Raise AssetError unless `path` holds exactly the pinned bytes of `asset`."""
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise AssetError(f"{asset.file}: not found at {path}") from exc
    if size != asset.size:
        raise AssetError(
            f"{asset.file}: {path} has {size} bytes, {asset.size} pinned: "
            "refusing a wrong or truncated file"
        )
    actual = sha256_of(path)
    if actual != asset.sha256:
        raise AssetError(
            f"{asset.file}: sha256 {actual} at {path} does not match the pinned "
            f"{asset.sha256}: refusing a corrupt or substituted file"
        )


def url_for(asset: Asset, base_url: str | None) -> str:
    """Upstream URL, or a mirror: `{commit}`/`{file}` placeholders, else `<base>/<file>`."""
    if not base_url:
        return UPSTREAM_URL.format(commit=asset.commit, file=asset.file)
    if "{file}" in base_url:
        return base_url.format(commit=asset.commit, file=asset.file)
    return base_url.rstrip("/") + "/" + asset.file


def download(asset: Asset, url: str, dest: str, timeout: float = 60.0) -> None:
    """Fetch `url` to `dest` atomically, refusing bytes that do not match the pin."""
    directory = os.path.dirname(dest) or "."
    os.makedirs(directory, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    fd, tmp = tempfile.mkstemp(prefix="." + asset.file + ".", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:
                    while True:
                        chunk = response.read(1 << 16)
                        if not chunk:
                            break
                        size += len(chunk)
                        if size > asset.size:
                            raise AssetError(
                                f"{asset.file}: {url} sends more than the pinned "
                                f"{asset.size} bytes: refused"
                            )
                        digest.update(chunk)
                        out.write(chunk)
            except urllib.error.HTTPError as exc:
                raise AssetError(
                    f"{asset.file}: download from {url} failed: HTTP {exc.code} {exc.reason}"
                ) from exc
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", None) or exc
                raise AssetError(f"{asset.file}: download from {url} failed: {reason}") from exc
        if size != asset.size or digest.hexdigest() != asset.sha256:
            raise AssetError(
                f"{asset.file}: {url} sent {size} bytes with sha256 "
                f"{digest.hexdigest()}, pinned {asset.size} bytes "
                f"{asset.sha256}: refused"
            )
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class AssetStore:
    """Gives the local path of a pinned asset, from `assets_dir` or the download cache."""

    def __init__(
        self,
        assets_dir: str | None = None,
        base_url: str | None = None,
        cache_dir: str | None = None,
    ) -> None:
        self.assets_dir = assets_dir
        self.base_url = base_url
        self.cache_dir = cache_dir or default_cache_dir()
        self._checked: dict[str, str] = {}

    def path(self, name: str) -> str:
        if name in self._checked:
            return self._checked[name]
        asset = PINNED.get(name)
        if asset is None:
            raise AssetError(f"{name}: not a pinned asset")
        if self.assets_dir is not None:
            local = os.path.join(self.assets_dir, name)
            if not os.path.exists(local) and self.base_url is None:
                raise AssetError(f"{name}: not in --assets {self.assets_dir}")
            if os.path.exists(local):
                check_file(local, asset)
                self._checked[name] = local
                return local
        cached = os.path.join(self.cache_dir, asset.commit, name)
        if os.path.exists(cached):
            try:
                check_file(cached, asset)
                self._checked[name] = cached
                return cached
            except AssetError:
                os.unlink(cached)  # a damaged cache entry is fetched again
        download(asset, url_for(asset, self.base_url), cached)
        self._checked[name] = cached
        return cached
