# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one validator each for the values that more than one place accepts from a
user: octal permission modes and group ids.

The tracefs module (on the target) and the compliance audit (on the controller)
both take a tracefs mode and gid; they parse them here so that the same text means
the same thing in both. Controller code may import this file: it needs nothing the
controller lacks.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import grp
import re

from ansible_collections.tracefleet.ftrace.plugins.module_utils._errors import TracefleetError

# Three or four octal digits, optionally after a leading 0: '750', '0750', '4755',
# '07777'. Shorter forms ('7', '50') are refused: they are more often a typo than a mode.
# Every pattern here is used with fullmatch: `$` would also match before a trailing
# newline. Only spaces around a value are dropped (" 0750 " as a template may leave
# it); a newline, a tab or any other control character makes the value invalid.
_OCTAL_MODE = re.compile(r"0?[0-7]{3,4}")
# ASCII digits only: str.isdigit() also accepts digits int() cannot read ('²').
_NUMBER = re.compile(r"[0-9]+")
# A group name: no whitespace, no control characters, no ':' (the group file's
# separator); getgrnam() itself refuses NUL with a ValueError.
_GROUP_NAME = re.compile(r"[^\s:\x00-\x1f\x7f]+")
MAX_MODE = 0o7777
# The largest gid the kernel maps: (gid_t)-1 means "no group" to every syscall.
MAX_GID = 0xFFFFFFFE


class ValidationError(TracefleetError, ValueError):
    """A value that is not what its option takes; the message names option and value."""


def parse_octal_mode(value: object, option: str = "mode") -> int | None:
    """None (not managed), or a permission mode from octal text ('0750', '750') or an
    int (YAML's unquoted 0750 arrives as 488)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValidationError("%s=%r is not an octal mode like '0750'" % (option, value))
    if isinstance(value, int):
        if not 0 <= value <= MAX_MODE:
            raise ValidationError("%s=%r is out of range (0 to 07777)" % (option, value))
        return value
    text = str(value).strip(" ")
    if not _OCTAL_MODE.fullmatch(text):
        raise ValidationError("%s=%r is not an octal mode like '0750'" % (option, value))
    return int(text, 8)  # at most four octal digits: never above 07777


def parse_gid(value: object, option: str = "gid", resolve_names: bool = True) -> int | None:
    """None (not managed), or a group id from a number, numeric text or, when
    `resolve_names`, a group name looked up on this host. The controller passes
    resolve_names=False: a name means something only on the host it belongs to."""
    if value is None:
        return None
    if isinstance(value, bool):
        if not resolve_names:
            raise ValidationError("%s=%r is not a numeric group id" % (option, value))
        raise ValidationError("%s=%r is neither a group name nor a number" % (option, value))
    if isinstance(value, int):
        return _gid_in_range(value, option)
    text = str(value).strip(" ")
    if _NUMBER.fullmatch(text):
        return _gid_in_range(int(text), option)
    if not resolve_names:
        raise ValidationError("%s=%r is not a numeric group id" % (option, value))
    if not _GROUP_NAME.fullmatch(text):
        raise ValidationError("%s=%r is neither a group name nor a number" % (option, value))
    try:
        return grp.getgrnam(text).gr_gid
    except (KeyError, ValueError):  # ValueError: a name the C library cannot take
        raise ValidationError("%s=%r: no such group on this host" % (option, text)) from None


def _gid_in_range(gid: int, option: str) -> int:
    if not 0 <= gid <= MAX_GID:
        raise ValidationError("%s=%r is out of range (0 to %d)" % (option, gid, MAX_GID))
    return gid
