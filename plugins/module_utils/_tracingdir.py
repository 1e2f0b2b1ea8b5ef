# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One tracing directory: the tracefs root or one of its instances.

The single object the domain layer uses to name, read and write tracefs files. Paths
are built here (an instance lives under `instances/NAME`), reads return text (or
None when the file is missing or unreadable), and every write goes through
`Control.write`, the one write helper that quotes the kernel's `error_log`.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils._control import Control


class TracingDir:
    """The tracefs root (`instance` None) or the instance `instance` under it."""

    def __init__(self, root: str, instance: str | None = None, control: Control | None = None) -> None:
        self.root = root
        self.instance = instance
        self.control = control if control is not None else Control(root)
        self.directory = os.path.join(root, "instances", instance) if instance else root

    # -- naming ---------------------------------------------------------------------
    def rel(self, *parts: str) -> str:
        """A file of this directory, relative to the tracefs root (what Control takes)."""
        if self.instance is None:
            return os.path.join(*parts) if parts else ""
        return os.path.join("instances", self.instance, *parts)

    def path(self, *parts: str) -> str:
        """The absolute path of a file of this directory."""
        return os.path.join(self.directory, *parts)

    def top(self) -> TracingDir:
        """The tracefs root this directory belongs to."""
        return self if self.instance is None else TracingDir(self.root, None, self.control)

    def instance_dir(self, name: str | None) -> TracingDir:
        """The directory of instance `name` (None: the root) on the same tracefs."""
        return TracingDir(self.root, name, self.control)

    # -- reading --------------------------------------------------------------------
    def exists(self) -> bool:
        return os.path.isdir(self.directory)

    def has(self, *parts: str) -> bool:
        return os.path.exists(self.path(*parts))

    def read(self, *parts: str) -> str | None:
        try:
            with open(self.path(*parts), encoding="utf-8", errors="replace") as handle:
                return handle.read()
        except OSError:
            return None

    def read_bytes(self, *parts: str) -> bytes | None:
        try:
            with open(self.path(*parts), "rb") as handle:
                return handle.read()
        except OSError:
            return None

    def lines(self, *parts: str) -> list[str]:
        """Non-empty lines, without the kernel's `#` comment lines."""
        text = self.read(*parts) or ""
        return [line.rstrip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]

    def instances(self) -> list[str]:
        """Names of the instances on this tracefs."""
        try:
            return sorted(os.listdir(self.top().path("instances")))
        except OSError:
            return []

    # -- writing (through the one write helper) ---------------------------------------
    def write(self, name: str, value: str, append: bool | None = None) -> None:
        self.control.write(self.rel(name), value, append=append)

    def replace_list(self, name: str, entries: str) -> None:
        self.control.replace_list(self.rel(name), entries)
