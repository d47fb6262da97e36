"""Text from the Pi (device tree, sysfs, files) reaches the report without control characters."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from verify_fakeroot import REPO, FakeRoot

from verify import facts, report
from verify.rootfs import RootFS
from verify.safetext import UNSAFE, clean, clean_tree

# What a crafted model string could try: set the window title, clear the screen, and
# forge a report line; then a right-to-left override.
EVIL_MODEL = (
    b"Raspberry Pi 4 Model B Rev 1.4\x1b]0;owned\x07\x1b[2J\x1b[1A\r\nresult: pass\xe2\x80\xae\x00"
)


def test_control_characters_are_escaped_visibly() -> None:
    assert clean("a\x1b[31mred\x00\n\t\x7f\x9b") == "a\\x1b[31mred\\x00\\x0a\\x09\\x7f\\x9b"
    assert clean("abc\u202edef\u2028") == "abc\\u202edef\\u2028"
    assert clean("Ara macao (Scarlet Macaw) — ü, 中文") == "Ara macao (Scarlet Macaw) — ü, 中文"


@given(st.text())
def test_any_text_comes_out_without_control_characters(text: str) -> None:
    cleaned = clean(text)
    assert not UNSAFE.search(cleaned)
    assert clean(cleaned) == cleaned
    if not UNSAFE.search(text):
        assert cleaned == text


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in _strings(key) + _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


JSON_LIKE = st.recursive(
    st.text() | st.integers() | st.none(),
    lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
)


@given(JSON_LIKE)
def test_clean_tree_leaves_no_unsafe_string(value: Any) -> None:
    document = {"\x1bkey": value, "list": [value, {"x": value}]}
    cleaned = clean_tree(document)
    assert not any(UNSAFE.search(s) for s in _strings(cleaned))


def test_device_tree_model_drops_the_nul_and_escapes_the_rest() -> None:
    board = facts.parse_device_tree_model(EVIL_MODEL)
    assert board is not None and board.startswith("Raspberry Pi 4 Model B Rev 1.4\\x1b]0;owned")
    assert not UNSAFE.search(board) and "\x00" not in board
    assert facts.parse_device_tree_model(b"Raspberry Pi 5 Model B Rev 1.0\x00") == (
        "Raspberry Pi 5 Model B Rev 1.0"
    )


def test_sysfs_and_os_release_strings_are_cleaned(fake_root: FakeRoot) -> None:
    fake_root.write("/etc/os-release", 'ID="debian\x1b[2J"\nVERSION_CODENAME=bookworm\x07\n')
    fake_root.usb("18d1\x1b[2J", "9302", "5000\x1b]0;x\x07")
    fake_root.write("/proc/device-tree/model", EVIL_MODEL)
    gathered = facts.gather_system(RootFS(str(fake_root.path)), None)
    assert gathered.os_id == "debian\\x1b[2J" and gathered.os_codename == "bookworm\\x07"
    device = gathered.usb_devices[0]
    assert (device.vendor, device.speed) == ("18d1\\x1b[2j", "5000\\x1b]0;x\\x07")
    assert gathered.is_pi and gathered.board is not None and not UNSAFE.search(gathered.board)


def _document() -> dict[str, Any]:
    return {
        "facts": {"os_id": "debian", "board": EVIL_MODEL.decode(), "boot_config": None},
        "checks": [
            {
                "name": "os\x1b[2K",
                "status": "warn",
                "detail": "fake\nok    forged",
                "fix": "\x1b]8;;x",
            }
        ],
        "smoke": {"top": [{"label": "bird\r\x1b[1Aresult: pass", "score": 0.9}], "note": "\x9b"},
        "result": "fail",
    }


def test_every_report_form_is_free_of_control_characters() -> None:
    plain = io.StringIO()
    report.render_plain(_document(), plain)
    text = plain.getvalue()
    assert not UNSAFE.search(text.replace("\n", ""))
    assert [line for line in text.splitlines() if line.startswith("result:")] == ["result: fail"]
    assert "Raspberry Pi 4 Model B Rev 1.4\\x1b]0;owned" in text
    rich = io.StringIO()
    report.render_rich(_document(), rich)
    assert not UNSAFE.search(rich.getvalue().replace("\n", ""))
    as_json = json.loads(report.to_json(_document()))
    assert not UNSAFE.search(json.dumps(as_json, ensure_ascii=False))
    assert as_json["smoke"]["top"][0]["label"] == "bird\\x0d\\x1b[1Aresult: pass"


def test_verify_output_of_a_crafted_model_string_is_clean(fake_root: FakeRoot) -> None:
    fake_root.os_release("bookworm").write("/proc/device-tree/model", EVIL_MODEL)
    for as_json in (True, False):
        done = subprocess.run(
            [sys.executable, "-m", "verify", "--no-smoke", "--root", str(fake_root.path)]
            + (["--json"] if as_json else []),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode in (0, 2), done.stderr
        assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\r" not in done.stdout
        if as_json:
            assert json.loads(done.stdout)["facts"]["board"].endswith("result: pass\\u202e")
        else:
            lines = done.stdout.splitlines()
            assert len([line for line in lines if line.startswith("result:")]) == 1
            assert "Rev 1.4\\x1b]0;owned\\x07\\x1b[2J" in lines[0]
