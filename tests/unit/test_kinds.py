"""The kinds of inventory variables: what each refuses, as properties and as a table."""

from __future__ import annotations

import string
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.plugins.filter.core import to_bool
from hypothesis import given
from hypothesis import strategies as st

from provision.errors import ConfigError
from provision.planning import kinds
from provision.planning.inventory import check_variables, parse_inventory_listing
from provision.planning.variables import REGISTRY, Variable

CORALPI = str(Path(sys.executable).parent / "coralpi")
URL_VARIABLES = [v for v in REGISTRY if v.kind == "url"]
GOOD_URLS = {
    "coralpi_coral_repo_url": "https://packages.cloud.google.com/apt",
    "coralpi_community_runtime_url": "http://10.0.0.5:8080/mirror/libedgetpu",
    "coralpi_community_wheel_url": "file:///srv/mirror/tflite-builds/{release}",
    "coralpi_gasket_dkms_url": "https://github.com/feranick/gasket-driver/releases/download/1.0-18.4",
    "coralpi_assets_url": "https://mirror.example/test_data/{commit}/{file}",
    "coralpi_apt_proxy": "http://user:p%40ss@10.0.0.1:3142",
    "coralpi_pip_index_url": "https://www.piwheels.org/simple",
}
#: Whitespace and control characters: each would end a line or a word in a file on a host.
BREAKING = st.sampled_from(
    [chr(c) for c in range(32)] + [" ", "\x7f", "\u0085", "\u2028", "\u00a0"]
)


@pytest.mark.parametrize("variable", URL_VARIABLES, ids=lambda v: v.name)
@given(data=st.data(), char=BREAKING)
def test_a_url_with_any_whitespace_or_control_character_is_refused(
    variable: Variable, data: st.DataObject, char: str
) -> None:
    good = GOOD_URLS[variable.name]
    at = data.draw(st.integers(min_value=0, max_value=len(good)))
    bad = good[:at] + char + good[at:]
    with pytest.raises(ConfigError) as err:
        check_variables("pi1", {variable.name: bad})
    assert str(err.value).startswith(f"host pi1: {variable.name}: ")
    assert "position" in str(err.value)


def test_every_url_variable_has_a_good_example_that_is_accepted() -> None:
    assert set(GOOD_URLS) == {v.name for v in URL_VARIABLES}
    for name, url in GOOD_URLS.items():
        assert check_variables("pi1", {name: url}) == {name: url}
        assert check_variables("pi1", {name: ""}) == {name: ""}  # unset


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("coralpi_coral_repo_url", "https://m.example/apt\nTrusted: yes", "a newline"),
        ("coralpi_coral_repo_url", "file:///srv/apt", "not a https:// or http:// URL"),
        ("coralpi_coral_repo_url", "ftp://m.example/apt", "not a https:// or http:// URL"),
        ("coralpi_apt_proxy", "http://10.0.0.1:3142 -o APT::Get::AllowUnauthenticated=1", "space"),
        ("coralpi_apt_proxy", "http://:3142", "names no host"),
        ("coralpi_apt_proxy", "http://proxy:99999", "invalid port"),
        ("coralpi_apt_proxy", "http://proxy:3142/$(reboot)", "'$'"),
        ("coralpi_apt_proxy", "http://proxy:3142/';reboot;'", '"\'"'),
        ("coralpi_pip_index_url", "https://idx.example/simple`id`", "'`'"),
        ("coralpi_apt_proxy", "http://u:p%20w@proxy:3142", "auth.conf cannot hold"),
        ("coralpi_apt_proxy", "http://u:machine@proxy:3142", "auth.conf cannot hold"),
        ("coralpi_apt_proxy", "http://u%0A:pw@proxy:3142", "auth.conf cannot hold"),
        ("coralpi_assets_url", "https://m.example/{commit.__class__}/{file}", "template field"),
        ("coralpi_assets_url", "https://m.example/{0}/{file}", "template field"),
        ("coralpi_assets_url", "https://m.example/{commit/{file}", "unbalanced"),
        (
            "coralpi_community_runtime_url",
            "https://m.example/{commit}",
            "unknown template field {commit}",
        ),
        ("coralpi_coral_repo_url", ["https://m.example"], "not a URL"),
        ("coralpi_user", "pi\nroot", "not a user name"),
        ("coralpi_user", "Pi", "not a user name"),
        ("coralpi_user", "root:x:0", "not a user name"),
        ("coralpi_user", "a" * 33, "not a user name"),
        ("coralpi_coral_key_fingerprints", ["A362B822"], "not an OpenPGP fingerprint"),
        ("coralpi_coral_key_fingerprints", "A362B822F6DEDC652817EA46B53DC80D13EDEF0Z", "OpenPGP"),
        ("coralpi_camera", "y", "not a boolean"),
        ("coralpi_camera", "", "not a boolean"),
        ("coralpi_accept_max_eula", 2, "not a boolean"),
        ("coralpi_accept_max_eula", 1.0, "not a boolean"),
        ("coralpi_accept_max_eula", " true", "not a boolean"),
        ("coralpi_serial", "25 %", "not a number of hosts"),
        ("coralpi_max_fail_percentage", "-1", "0 to 100"),
    ],
)
def test_bad_values_are_refused_naming_host_and_variable(
    name: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        check_variables("pi7", {name: value})
    text = str(err.value)
    assert text.startswith(f"host pi7: {name}: ") and message in text, text
    assert "\n" not in text.split(": ", 2)[2].split("'")[0]  # the message itself is one line


def test_fingerprints_are_normalised() -> None:
    spaced = "a362 b822 f6de dc65 2817  ea46 b53d c80d 13ed ef05"
    got = check_variables("pi1", {"coralpi_coral_key_fingerprints": [spaced]})
    assert got == {"coralpi_coral_key_fingerprints": ["A362B822F6DEDC652817EA46B53DC80D13EDEF05"]}


ANSIBLE_WORDS = sorted(kinds.BOOL_TRUE | kinds.BOOL_FALSE)


@given(
    st.one_of(
        st.sampled_from(ANSIBLE_WORDS).flatmap(
            lambda w: st.sampled_from([w, w.upper(), w.capitalize()])
        ),
        st.booleans(),
        st.sampled_from([0, 1]),
    )
)
def test_booleans_read_as_ansibles_bool_filter_reads_them(value: object) -> None:
    assert kinds.parse_bool("v", value) is to_bool(value)


@given(st.one_of(st.text(), st.integers(), st.floats(), st.none(), st.lists(st.booleans())))
def test_only_ansibles_own_boolean_words_are_accepted(value: object) -> None:
    if isinstance(value, bool) or (isinstance(value, int) and value in (0, 1)):
        accepted = True
    elif isinstance(value, str):
        accepted = value.lower() in kinds.BOOL_TRUE | kinds.BOOL_FALSE
    else:
        accepted = False
    try:
        kinds.parse_bool("v", value)
    except ConfigError:
        assert not accepted
    else:
        assert accepted


@given(st.text(alphabet=string.printable + "\x00\u2028é", min_size=0, max_size=40))
def test_user_names_are_posix_names(name: str) -> None:
    try:
        kinds.check_user("coralpi_user", name)
    except ConfigError:
        return
    assert name and len(name) <= 32 and name[0] in string.ascii_lowercase + "_"
    assert set(name.rstrip("$")) <= set(string.ascii_lowercase + string.digits + "_-")


def test_template_fields_are_filled_without_format() -> None:
    template = "https://m.example/{commit}/{file}"
    assert kinds.fill_template(template, commit="abc", file="x.tflite") == (
        "https://m.example/abc/x.tflite"
    )
    # str.format would look the attribute up; the checker refuses it and the filler leaves it.
    assert kinds.fill_template("{commit.__class__}", commit="abc") == "{commit.__class__}"


@pytest.mark.parametrize(
    "name", ["../../etc/cron.d/x", "pi/1", "pi 1", "pi\n1", ".hidden", "-oProxyCommand=x", ""]
)
def test_host_names_that_cannot_be_file_names_are_refused(name: str) -> None:
    listing = {"_meta": {"hostvars": {name: {}}}, "all": {"hosts": [name]}}
    with pytest.raises(ConfigError, match="ansible_host"):
        parse_inventory_listing(listing, None)


def test_plain_host_names_are_kept() -> None:
    names = ["pi-07", "pi1.example.com", "10.0.0.5", "fe80::1", "Pi_Kitchen"]
    listing = {"_meta": {"hostvars": {n: {} for n in names}}, "all": {"hosts": names}}
    assert [h.name for h in parse_inventory_listing(listing, None)] == sorted(names)


# -- through the real entry point, before any host is touched --------------------------------

CLI_CASES = [
    ("coralpi_coral_repo_url", '"https://m.example/apt\\nTrusted: yes"', "a newline"),
    ("coralpi_apt_proxy", '"http://10.0.0.1:3142 -o Debug=1"', "a space"),
    ("coralpi_user", '"pi;reboot"', "not a user name"),
    ("coralpi_camera", '"y"', "not a boolean"),
]


@pytest.mark.parametrize(("name", "value", "message"), CLI_CASES)
@pytest.mark.parametrize("command", ["apply", "verify", "plan", "lock"])
def test_the_cli_refuses_a_bad_value_before_any_host_is_touched(
    tmp_path: Path, command: str, name: str, value: str, message: str
) -> None:
    """One bad value on one host of two: exit 1, host and variable named, and no run
    directory, probe or lock written (were the hosts reached, loopback's closed port 9 would
    answer)."""
    inventory = tmp_path / "inventory.yml"
    inventory.write_text(
        "all:\n  vars:\n    ansible_host: 127.0.0.1\n    ansible_port: 9\n"
        "  hosts:\n    good: {}\n"
        f"    bad:\n      {name}: {value}\n"
    )
    runs = tmp_path / "runs"
    runs.mkdir()
    lock = tmp_path / "coralpi.lock"
    args = ["-i", str(inventory)]
    if command in ("apply", "verify"):
        args += ["--runs-dir", str(runs), "--lock", str(lock)]
    if command == "lock":
        args += ["--lock", str(lock)]
    proc = subprocess.run(
        [CORALPI, command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"host bad: {name}: " in proc.stderr and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(runs.iterdir()) == [] and not lock.exists()
