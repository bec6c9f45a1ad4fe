"""Errors of the core that are not about a user's setting."""

from __future__ import annotations


class SnapshotError(ValueError):
    """A saved snapshot cannot be restored; the message names the bad part."""
