# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The controller's one "this path stays inside that directory" guard.

Every controller-side path built from something a host or a playbook supplied (a
host name, a file name in a manifest, a report name) goes through `inside`, which
resolves symlinks on both sides, so neither `..` nor a symlink planted in the tree
can lead a write or a read outside the directory.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import os

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError


class PathEscapeError(TracefleetError):
    """A path that would leave the directory it must stay in."""


def inside(base: str, *parts: str, allow_base: bool = False) -> str:
    """`base` joined with `parts`, resolved; raises PathEscapeError unless the result
    lies strictly inside the resolved `base` (or is `base` itself with allow_base)."""
    root = os.path.realpath(base)
    path = os.path.realpath(os.path.join(root, *parts))
    if os.path.commonpath([root, path]) != root or (path == root and not allow_base):
        raise PathEscapeError("%s is not inside %s" % (os.path.join(base, *parts), base))
    return path
