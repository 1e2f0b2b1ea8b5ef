"""Where tracelab keeps its cache (kernels, images) and its VM state."""

from __future__ import annotations

import os
from pathlib import Path


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    if value and os.path.isabs(value):
        return Path(value)
    return Path.home() / fallback


def cache_dir() -> Path:
    """Kernels, base root filesystems and boot images; safe to delete."""
    override = os.environ.get("TRACELAB_CACHE_DIR")
    if override:
        return Path(override)
    return _xdg("XDG_CACHE_HOME", ".cache") / "tracefleet" / "lab"


def state_dir() -> Path:
    """One directory per VM: its key, port, pid and console log."""
    override = os.environ.get("TRACELAB_STATE_DIR")
    if override:
        return Path(override)
    return _xdg("XDG_STATE_HOME", ".local/state") / "tracefleet" / "lab"
