"""Passwords in URLs never reach what coralpi prints or keeps."""

from __future__ import annotations

import pytest

from provision.redaction import MASK, credentials_of, redact, without_credentials

CASES = [
    ("http://user:s3cret@10.0.0.1:3142", "http://user:***@10.0.0.1:3142"),
    ("https://:tok3n@piwheels.example/simple", "https://:***@piwheels.example/simple"),
    (
        "proxy http://u:pa:ss@h:1/ and https://v:w0rd@x",
        "proxy http://u:***@h:1/ and https://v:***@x",
    ),
    (
        'Acquire::http::Proxy "http://u:p%40ss@h:3142";',
        'Acquire::http::Proxy "http://u:***@h:3142";',
    ),
    ("'http://u:quoted@h'", "'http://u:***@h'"),
    ("https://ghp_T0KEN@github.example/o/r", "https://***@github.example/o/r"),
    ("https://T0KEN:@idx.example/simple", "https://***:@idx.example/simple"),
    ("http://u:p@ss@h:3142/x", "http://u:***@h:3142/x"),
    ("http://u:p@ss@w@h:3142 then http://h2", "http://u:***@h:3142 then http://h2"),
    ('{"url": "http://a:b@c"}', '{"url": "http://a:***@c"}'),
]

UNCHANGED = [
    "http://10.0.0.1:3142",  # a port is not a password
    "ssh pi@10.0.0.11 -p 22",  # no scheme
    "E: Failed to fetch http://deb.debian.org/debian/dists/bookworm/InRelease",
    "mailto:someone@example.org",
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_url_passwords_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert MASK in redact(text)


@pytest.mark.parametrize("text", UNCHANGED)
def test_text_without_url_passwords_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_redacting_twice_changes_nothing_more() -> None:
    once = redact("http://u:secret@h:1 and ftp://x:y@z")
    assert redact(once) == once
    assert "secret" not in once and ":y@" not in once


def test_credentials_are_left_out_of_what_others_read_and_put_back_for_the_same_host() -> None:
    index = "https://u:t0k%40n@idx.example:8443/simple"
    assert without_credentials(index) == "https://idx.example:8443/simple"
    assert without_credentials("https://T0KEN@idx.example/x") == "https://idx.example/x"
    assert without_credentials("https://idx.example/x") == "https://idx.example/x"
    wheel = "https://idx.example:8443/files/a-1-py3-none-any.whl"
    assert (
        credentials_of(wheel, index)
        == "https://u:t0k%40n@idx.example:8443/files/a-1-py3-none-any.whl"
    )
    assert credentials_of("https://other.example/a.whl", index) == "https://other.example/a.whl"
    assert credentials_of("http://idx.example:8443/a.whl", index) == "http://idx.example:8443/a.whl"
    assert credentials_of(wheel, without_credentials(index)) == wheel
