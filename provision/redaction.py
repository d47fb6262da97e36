"""Keeping credentials out of what coralpi prints and keeps (progress, reports, errors).

Inventory settings such as ``coralpi_apt_proxy`` or ``coralpi_pip_index_url`` may carry a
user and password in the URL (``http://user:secret@proxy:3142``). Anything coralpi writes
for people to read passes through :func:`redact` first, which keeps the user name (useful
when debugging) and replaces the password with ``***``.
"""

from __future__ import annotations

import re

#: What replaces a secret.
MASK = "***"

# scheme://user:password@ -- the user may be empty (http://:token@host); the password may
# hold ':' but not '@', '/', quotes or whitespace (a valid URL percent-encodes those).
_URL_CREDENTIALS = re.compile(
    r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@'\"]*):(?P<secret>[^\s/@'\"]+)@"
)


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by ***."""
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('head')}:{MASK}@", text)
