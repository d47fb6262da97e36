"""Fingerprint check of an apt signing key file, with keys this test generates."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from provision.artifacts import keyring
from provision.artifacts.keyring import KeyringError

pytestmark = pytest.mark.skipif(shutil.which("gpg") is None, reason="gpg is not installed")


def _gpg(home: Path, *args: str) -> bytes:
    env = dict(os.environ, GNUPGHOME=str(home))
    return subprocess.run(
        ["gpg", "--batch", "--quiet", "--passphrase", "", "--pinentry-mode", "loopback", *args],
        env=env,
        check=True,
        capture_output=True,
    ).stdout


def _fingerprints(home: Path) -> list[str]:
    out = _gpg(home, "--list-keys", "--with-colons").decode()
    fprs, want = [], False
    for line in out.splitlines():
        fields = line.split(":")
        if fields[0] == "pub":
            want = True
        elif fields[0] == "fpr" and want:
            fprs.append(fields[9])
            want = False
    return fprs


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    """Two generated signing keys, exported together as one armored key file."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    try:
        _gpg(
            home,
            "--quick-generate-key",
            "Stand-in Archive Key <archive@example.invalid>",
            "ed25519",
            "sign",
            "never",
        )
        _gpg(
            home,
            "--quick-generate-key",
            "Other Key <other@example.invalid>",
            "ed25519",
            "sign",
            "never",
        )
        first, second = _fingerprints(home)
        armored = _gpg(home, "--armor", "--export")
        only_first = _gpg(home, "--export", first)
        # A STAND-IN key that expired long ago: made with gpg's clock set to 2020-01-01,
        # valid for one day (like Google's 54A647F9... key, expired 2021-03-31).
        _gpg(
            home,
            "--faked-system-time",
            "20200101T000000",
            "--quick-generate-key",
            "Stand-in Expired Key <expired@example.invalid>",
            "ed25519",
            "sign",
            "1d",
        )
        (expired,) = [f for f in _fingerprints(home) if f not in (first, second)]
        yield {
            "first": first,
            "second": second,
            "armored": armored,
            "binary_first": only_first,
            "expired": expired,
            "with_expired": _gpg(home, "--armor", "--export", first, expired),
        }
    finally:
        # End the gpg-agent this fixture's key generation started (by its home, not by name).
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False)


def _show(data: bytes) -> list[str]:
    return [k.fingerprint for k in keyring.read_keys(data)]


def test_read_keys_lists_both_primary_fingerprints(keys: dict[str, object]) -> None:
    assert isinstance(keys["armored"], bytes)
    assert sorted(_show(keys["armored"])) == sorted([keys["first"], keys["second"]])


def test_accepted_fingerprint_passes_and_keyring_holds_only_it(keys: dict[str, object]) -> None:
    armored, first = keys["armored"], keys["first"]
    assert isinstance(armored, bytes) and isinstance(first, str)
    spaced = " ".join(first[i : i + 4] for i in range(0, 40, 4)).lower()
    ring, matched = keyring.build_keyring(armored, [spaced], "http://mirror/doc/apt-key.gpg")
    assert matched == [first]
    assert not ring.startswith(b"-----BEGIN")  # binary, as apt's signed-by wants
    assert ring[0] & 0x80  # an OpenPGP packet header
    assert _show(ring) == [first]


def test_binary_key_file_is_accepted_too(keys: dict[str, object]) -> None:
    data, first = keys["binary_first"], keys["first"]
    assert isinstance(data, bytes) and isinstance(first, str)
    ring, matched = keyring.build_keyring(data, [first], "file")
    assert matched == [first]
    assert _show(ring) == [first]


def test_no_accepted_fingerprint_lists_what_was_found(keys: dict[str, object]) -> None:
    armored = keys["armored"]
    assert isinstance(armored, bytes)
    with pytest.raises(KeyringError) as err:
        keyring.build_keyring(armored, list(keyring.DEFAULT_CORAL_FINGERPRINTS), "the mirror")
    text = str(err.value)
    assert str(keys["first"]) in text and str(keys["second"]) in text
    assert "Stand-in Archive Key" in text
    assert keyring.DEFAULT_CORAL_FINGERPRINTS[0] in text
    assert "coralpi_coral_key_fingerprints" in text


def test_garbage_is_not_a_key() -> None:
    with pytest.raises(KeyringError):
        keyring.build_keyring(b"<html>404</html>", [keyring.DEFAULT_CORAL_FINGERPRINTS[0]], "x")


@pytest.mark.parametrize("bad", ["B53DC80D13EDEF05", "not-hex" * 6, ""])
def test_short_or_bad_fingerprints_are_refused(bad: str) -> None:
    with pytest.raises(KeyringError, match="fingerprint"):
        keyring.normalize_fingerprint(bad)


def test_parse_colons_on_recorded_output() -> None:
    recorded = (
        "pub:-:2048:1:B53DC80D13EDEF05:1614614400:::-:::scSC::::::23::0:\n"
        "fpr:::::::::A362B822F6DEDC652817EA46B53DC80D13EDEF05:\n"
        "uid:-::::1614614400::X::Rapture Automatic Signing Key"
        " (cloud-rapture-signing-key-2021-03-01-08_01_09.pub)::::::::::0:\n"
        "sub:-:2048:1:AAAAAAAAAAAAAAAA:1614614400::::::s::::::23:\n"
        "fpr:::::::::111111111111111111111111AAAAAAAAAAAAAAAA:\n"
        "pub:e:2048:1:6A030B21BA07F4FB:1530000000:1600000000::-:::sc::::::23::0:\n"
        "fpr:::::::::54A647F9048D5688D7DA2ABE6A030B21BA07F4FB:\n"
        "uid:e::::1530000000::Y::Google Cloud Packages Automatic Signing Key"
        " <gc-team@google.com>::::::::::0:\n"
    )
    keys = keyring.parse_colons(recorded)
    assert [k.fingerprint for k in keys] == [
        "A362B822F6DEDC652817EA46B53DC80D13EDEF05",
        "54A647F9048D5688D7DA2ABE6A030B21BA07F4FB",
    ]
    assert keys[0].subkeys == ("111111111111111111111111AAAAAAAAAAAAAAAA",)
    assert keys[1].uids[0].startswith("Google Cloud Packages")
    # a subkey fingerprint on the accepted list accepts its primary key
    assert keyring.accepted_keys(keys, ["111111111111111111111111AAAAAAAAAAAAAAAA"]) == [keys[0]]


def test_an_expired_accepted_key_is_refused_by_name(keys: dict[str, object]) -> None:
    data, expired = keys["with_expired"], keys["expired"]
    assert isinstance(data, bytes) and isinstance(expired, str)
    with pytest.raises(KeyringError) as err:
        keyring.build_keyring(data, [expired], "the mirror")
    text = str(err.value)
    assert (
        f"{expired} (Stand-in Expired Key <expired@example.invalid>) expired on 2020-01-02" in text
    )
    assert "coralpi_coral_key_fingerprints" in text


def test_an_expired_key_beside_a_good_one_is_left_out_and_named(keys: dict[str, object]) -> None:
    data, expired, first = keys["with_expired"], keys["expired"], keys["first"]
    assert isinstance(data, bytes) and isinstance(expired, str) and isinstance(first, str)
    ring, matched = keyring.build_keyring(data, [first, expired], "the mirror")
    assert matched == [first]
    assert _show(ring) == [first]  # never trusted silently: not in the keyring
    (note,) = keyring.untrusted_accepted(data, [first, expired])
    assert note.startswith(expired) and note.endswith("expired on 2020-01-02")


def test_key_problems_from_recorded_colons() -> None:
    recorded = (
        "pub:e:2048:1:6A030B21BA07F4FB:1522540800:1617148800::-:::sc::::::23::0:\n"
        "fpr:::::::::54A647F9048D5688D7DA2ABE6A030B21BA07F4FB:\n"
        "pub:r:255:22:79EC6E52AFA9CCB8:1577836800:::-:::sc:::::ed25519:::0:\n"
        "fpr:::::::::83F3BF971EB99471CF4366E979EC6E52AFA9CCB8:\n"
        "pub:-:255:22:0000000000000001:1577836800:::-:::sc:::::ed25519:::0:\n"
        "fpr:::::::::1111111111111111111111110000000000000001:\n"
    )
    old, revoked, good = keyring.parse_colons(recorded)
    assert old.problem() == "expired on 2021-03-31"
    assert revoked.problem() == "is revoked"
    assert good.problem() is None
    # an expiry date in the past counts even where gpg did not mark it
    assert keyring.KeyInfo("F" * 40, (), (), "-", "1600000000").problem() == "expired on 2020-09-13"
