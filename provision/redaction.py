"""Keeping credentials out of what coralpi prints and keeps (progress, reports, errors).

Inventory settings such as ``coralpi_apt_proxy`` or ``coralpi_pip_index_url`` may carry a
user and password in the URL (``http://user:secret@proxy:3142``) or a token as the user
(``https://TOKEN@index``). Anything coralpi writes for people to read passes through
:func:`redact` first, which keeps a user name that has a password beside it (useful when
debugging) and replaces the password, or a lone token, with ``***``. What is written for
others to read later (the lock, a card's plan) holds no credentials at all
(:func:`without_credentials`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

#: What replaces a secret.
MASK = "***"

# scheme://USERINFO@ -- USERINFO runs to the last '@' of the authority, so a password
# written with a bare '@' (http://u:p@ss@host) is masked whole; no whitespace, quotes or '/'.
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/?#'\"]*)@")


def _mask(userinfo: str) -> str:
    """``user:password`` keeps the user (useful when debugging); ``TOKEN`` and ``TOKEN:``
    (a token written as the user, as GitHub and many indexes take it) are masked whole."""
    user, colon, password = userinfo.partition(":")
    if password:
        return f"{user}:{MASK}"
    return MASK + colon


def redact(text: str) -> str:
    """`text` with the credentials of every URL in it replaced by ***."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{_mask(m.group('userinfo'))}@", text)


def without_credentials(url: str) -> str:
    """``url`` with no user or password (what may be written where others read it: the lock,
    a card's plan); the credentials stay where the user keeps them (the inventory, netrc)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def credentials_of(url: str, source: str) -> str:
    """``url`` with the credentials of ``source`` when both name the same host and port and
    ``url`` has none of its own (a wheel found on an index that needs a login)."""
    parts, src = urlsplit(url), urlsplit(source)
    if "@" in parts.netloc or "@" not in src.netloc:
        return url
    userinfo, _, host = src.netloc.rpartition("@")
    if (parts.scheme, parts.netloc.lower()) != (src.scheme, host.lower()):
        return url
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))
