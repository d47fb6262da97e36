"""What a value of each kind of inventory variable may be: checked before any host is touched.

Free-form values reach files and commands on the hosts (a deb822 source, apt's proxy
setting, the first-boot script, ``pip``'s index option), so each is refused unless it is
exactly what its kind allows; the templates quote what they write as a second line of
defence. Every checker returns the value as coralpi uses it or raises
:class:`~provision.errors.ConfigError` naming the variable and what would be accepted.

Kinds: ``bool`` (Ansible's own rule, :func:`parse_bool`), ``url`` (schemes per variable,
RFC 3986 characters only), ``user`` (a POSIX user name), ``fingerprints`` (OpenPGP v4
fingerprints), ``batch`` (a number of hosts or a percentage), ``percent`` (0 to 100) and
``host`` (an inventory host name, used as a file name in run directories).
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from urllib.parse import unquote, urlsplit

from provision.errors import ConfigError

#: What ansible-core's ``bool`` filter accepts (ansible/plugins/filter/core.py, 2.19): a
#: string in any case, or an int/bool whose ``str()`` is one of these. It coerces anything
#: else with a deprecation warning (an error from 2.23); coralpi refuses it now, so the
#: controller and the roles can never read one value two ways.
BOOL_TRUE = frozenset({"yes", "on", "true", "1"})
BOOL_FALSE = frozenset({"no", "off", "false", "0"})

#: Characters RFC 3986 allows in a URI (unreserved, reserved and '%').
_URL_CHARS = frozenset(string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%")
#: Shell and quoting characters RFC 3986 allows but no mirror URL needs; they are refused
#: so that no value can end a quoted word in a file or script on the host.
_URL_REFUSED = frozenset("'`$;")
_USER = re.compile(r"[a-z_][a-z0-9_-]{0,30}\$?")
_FINGERPRINT = re.compile(r"[0-9A-F]{40}")
_TEMPLATE_FIELD = re.compile(r"\{([^{}]*)\}")


def _describe(char: str) -> str:
    names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", " ": "a space"}
    if char in names:
        return names[char]
    if not char.isprintable():
        return f"the control character {char!r}"
    return f"{char!r}"


def parse_bool(variable: str, value: object) -> bool:
    """A boolean read exactly as Ansible's ``bool`` filter reads it; anything it would only
    coerce with a deprecation warning (``y``, ``""``, ``2``, ``1.0``...) is refused."""
    if isinstance(value, str):
        text = value.lower()
    elif isinstance(value, int):  # bool is an int: True -> "true"
        text = str(value).lower()
    else:
        text = None
    if text in BOOL_TRUE:
        return True
    if text in BOOL_FALSE:
        return False
    raise ConfigError(
        f"{variable}: {value!r} is not a boolean; write true or false "
        "(Ansible also reads yes/no, on/off, 1/0)"
    )


def check_url(
    variable: str, value: object, schemes: Sequence[str], fields: Sequence[str] = ()
) -> str:
    """A URL of one of ``schemes`` (``""``: not set). ``fields`` are the ``{name}`` template
    fields it may hold (filled in by :func:`fill_template`, never by ``str.format``)."""
    if not isinstance(value, str):
        raise ConfigError(f"{variable}: {value!r} is not a URL (a string like https://host/path)")
    if value == "":
        return value
    allowed = _URL_CHARS | (frozenset("{}") if fields else frozenset())
    for index, char in enumerate(value):
        if char not in allowed or char in _URL_REFUSED:
            raise ConfigError(
                f"{variable}: {_describe(char)} at position {index + 1} is not allowed in a "
                "URL (percent-encode it, e.g. %20 for a space)"
            )
    for name in _TEMPLATE_FIELD.findall(value):
        if name not in fields:
            raise ConfigError(
                f"{variable}: unknown template field {{{name}}}; the fields are "
                + ", ".join(f"{{{f}}}" for f in fields)
            )
    if _TEMPLATE_FIELD.sub("", value).count("{") or _TEMPLATE_FIELD.sub("", value).count("}"):
        raise ConfigError(f"{variable}: unbalanced '{{' or '}}' in {value!r}")
    parts = urlsplit(_TEMPLATE_FIELD.sub("x", value))
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise ConfigError(
            f"{variable}: {value!r} is not a {' or '.join(s + '://' for s in schemes)} URL"
        )
    if scheme in ("http", "https"):
        try:
            port = parts.port
        except ValueError:
            raise ConfigError(f"{variable}: {value!r} has an invalid port") from None
        if not parts.hostname:
            raise ConfigError(f"{variable}: {value!r} names no host (e.g. http://10.0.0.1:3142)")
        if port == 0:
            raise ConfigError(f"{variable}: {value!r} has an invalid port")
    return value


def check_netrc_login(variable: str, url: str) -> str:
    """A URL whose login goes into a netrc-style file (apt's auth.conf.d): once decoded, the
    user and password hold no whitespace or control character, and neither is the word
    ``machine`` (apt 1.8's parser takes it for the next entry)."""
    userinfo = urlsplit(url).netloc.rpartition("@")[0]
    for part in userinfo.split(":", 1) if userinfo else ():
        text = unquote(part)
        if text == "machine" or any(c.isspace() or not c.isprintable() for c in text):
            raise ConfigError(
                f"{variable}: its user or password, decoded, holds whitespace, a control "
                "character or is the word 'machine', which apt's auth.conf cannot hold"
            )
    return url


def fill_template(template: str, **values: str) -> str:
    """``template`` with each ``{name}`` replaced (no attribute or index look-ups, unlike
    ``str.format``; the URL was checked by :func:`check_url` for its fields)."""
    return _TEMPLATE_FIELD.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def check_user(variable: str, value: object) -> str:
    """A POSIX user name as Debian's adduser accepts it (lower case, at most 32 characters)."""
    if not isinstance(value, str) or not _USER.fullmatch(value):
        raise ConfigError(
            f"{variable}: {value!r} is not a user name (lower-case letters, digits, '_' and "
            "'-', starting with a letter or '_', at most 32 characters)"
        )
    return value


def check_fingerprints(variable: str, value: object) -> tuple[str, ...]:
    """OpenPGP fingerprints (40 hex digits each, spaces allowed inside one), as a list or as
    one string separated by commas; upper case, without spaces."""
    if value in (None, "", []):
        return ()
    if isinstance(value, str):
        items: Sequence[object] = value.split(",")
    elif isinstance(value, Sequence):
        items = value
    else:
        raise ConfigError(f"{variable}: {value!r} is not a list of fingerprints")
    out = []
    for item in items:
        text = "".join(str(item).split()).upper()
        if text.startswith("0X"):
            text = text[2:]
        if not _FINGERPRINT.fullmatch(text):
            raise ConfigError(
                f"{variable}: {item!r} is not an OpenPGP fingerprint (40 hex digits, e.g. "
                "`gpg --show-keys --with-fingerprint FILE` prints them)"
            )
        out.append(text)
    return tuple(out)


def check_batch(variable: str, value: object) -> int | str:
    """Hosts per rolling batch: a whole number from 1, or a percentage from 1% to 100%."""
    text = str(value).strip()
    number = text[:-1] if text.endswith("%") else text
    if isinstance(value, bool) or not number.isdigit():
        raise ConfigError(
            f"{variable}: {value!r} is not a number of hosts or a percentage like 25%"
        )
    if int(number) == 0 or (text.endswith("%") and int(number) > 100):
        raise ConfigError(f"{variable}: {value!r} must be from 1 (or 1%) up to 100%")
    return text if text.endswith("%") else int(number)


def check_percent(variable: str, value: object) -> int:
    """A whole number from 0 to 100."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit() or int(text) > 100:
        raise ConfigError(f"{variable}: {value!r} is not a whole number from 0 to 100")
    return int(text)


def check_path(variable: str, value: object) -> str:
    """A controller path: a non-empty string without control characters."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{variable}: {value!r} is not a path")
    bad = next((c for c in value if ord(c) < 32 or ord(c) == 127), None)
    if bad is not None:
        raise ConfigError(f"{variable}: {value!r} holds {_describe(bad)}")
    return value


def check_host_name(name: str) -> str:
    """An inventory host name coralpi can use as a file name (probe facts, verify reports):
    no path separators, whitespace or control characters, not hidden. The address to reach
    the host belongs in ``ansible_host``."""
    bad = next((c for c in name if c in "/\\" or c.isspace() or not c.isprintable()), None)
    if not name or bad is not None or name.startswith((".", "-")):
        why = f"holds {_describe(bad)}" if bad is not None else "starts with '.' or '-'"
        if not name:
            why = "is empty"
        raise ConfigError(
            f"inventory host name {name!r} {why}; coralpi names files after hosts: use a "
            "plain name (e.g. pi-07) and put the address in ansible_host"
        )
    return name
