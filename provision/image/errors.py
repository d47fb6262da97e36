"""The error raised for an image or card coralpi refuses to touch."""

from __future__ import annotations

from provision.errors import ConfigError


class ImageError(ConfigError):
    """A target that is not a usable card or image; raised before anything is written."""
