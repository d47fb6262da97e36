"""The stand-in community repository serves the community .debs `coralpi plan` picks for
the Debian releases the test fleet runs (so a fleet host never asks for a file name the
real releases have but the stand-in lacks), and no release/build no plan picks."""

from __future__ import annotations

from provision.artifacts.service import runtime_deb_url, runtime_debs
from provision.errors import UnsupportedTarget
from provision.planning.matrix import load_matrix, resolve
from provision.planning.targets import ARCHS, Choices, Target
from testfleet.standin_coral import ARCHES, community_deb_names

FLEET_RELEASES = ("bullseye", "bookworm", "trixie")


def _planned_names() -> set[str]:
    names: set[str] = set()
    for codename in FLEET_RELEASES:
        rel = load_matrix().releases[codename]
        for arch in ARCHS:
            target = Target(rel.os_ids[0], codename, arch, rel.python, rel.glibc)
            # max too: Coral's pool lacks libedgetpu1-max for arm64, so it comes from the
            # community release there.
            for choices in (Choices(), Choices(runtime="max", accept_max_eula=True)):
                try:
                    plan = resolve(target, choices)
                except UnsupportedTarget:
                    continue
                names.update(runtime_debs(plan).values())
    return names


def _release_build(name: str) -> str:
    """``libedgetpu1-std_16.0tf2.19.1-1.trixie_arm64.deb`` -> ``16.0tf2.19.1-1.trixie``."""
    return name.split("_")[1]


def test_the_standin_serves_every_planned_community_deb_and_no_stale_release() -> None:
    planned = _planned_names()
    served = set(community_deb_names(tuple(ARCHES)))
    assert planned, "no fleet release plans a community .deb"
    assert planned <= served, sorted(planned - served)
    # Every release/build served is one some fleet plan picks (for some architecture).
    assert {_release_build(n) for n in served} == {_release_build(n) for n in planned}
    assert "libedgetpu1-max_16.0tf2.19.1-1.trixie_arm64.deb" in served
    assert "libedgetpu1-std_16.0tf2.17.1-1.bookworm_amd64.deb" in served


def test_runtime_deb_urls_fill_the_release_tag_or_stay_flat() -> None:
    name = "libedgetpu1-std_16.0tf2.19.1-1.trixie_arm64.deb"
    github = "https://github.com/feranick/libedgetpu/releases/download/{release}"
    assert runtime_deb_url(github, "16.0tf2.19.1-1", name) == (
        f"https://github.com/feranick/libedgetpu/releases/download/16.0TF2.19.1-1/{name}"
    )
    assert runtime_deb_url("http://127.0.0.1:8080/community/", "16.0tf2.19.1-1", name) == (
        f"http://127.0.0.1:8080/community/{name}"
    )
