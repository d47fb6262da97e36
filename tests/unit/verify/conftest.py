"""Fixtures for the verify unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from verify_fakeroot import FakeRoot


@pytest.fixture
def fake_root(tmp_path: Path) -> FakeRoot:
    """An empty root directory to record a system's files in."""
    root = tmp_path / "root"
    root.mkdir()
    return FakeRoot(root)
