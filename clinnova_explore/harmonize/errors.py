"""Errors raised by harmonization."""

from __future__ import annotations

__all__ = ["HarmonizeError"]


class HarmonizeError(RuntimeError):
    """A native export file cannot be read as its site spec describes.

    The message names the site, file, line and column (or field) and says what to do.
    Row-level problems never raise: those rows go to the quarantine table.
    """
