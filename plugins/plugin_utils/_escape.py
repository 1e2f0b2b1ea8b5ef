# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one escaping helper of the controller's report writers (the run report's HTML,
the audit's JSON, JUnit XML, Markdown and HTML).

Text from hosts (names, mount points, probe lines, messages, kernel releases) is
untrusted. Before it lands in a report, `line` makes it one line of harmless text:
line breaks become spaces, and whatever a terminal, an editor or a renderer would act
on (C0 and C1 controls such as ESC and NUL, the Unicode line and paragraph
separators, the bidirectional overrides of "Trojan source", lone surrogates left by
undecodable host bytes) becomes a visible backslash escape. `html`, `markdown` and
`xml` then escape what is special in that format.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations

import html as _html
import re

_LINE_BREAKS = re.compile("[\r\n\t\v\f]+")
# C0 and C1 controls, DEL, the line/paragraph separators, the bidirectional
# embeddings, overrides and isolates, and lone surrogates.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
# Characters XML 1.0 cannot carry at all, escaped or not (U+FFFE and U+FFFF remain
# after `line`).
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|#!~])")


def _backslash(match: re.Match) -> str:
    code = ord(match.group())
    return "\\x%02x" % code if code < 0x100 else "\\u%04x" % code


def line(value) -> str:
    """`value` as one line of text with nothing in it that acts: None is ""."""
    text = "" if value is None else str(value)
    return _UNSAFE.sub(_backslash, _LINE_BREAKS.sub(" ", text))


def html(value) -> str:
    """For HTML text and attribute values (quotes escaped too)."""
    return _html.escape(line(value), quote=True)


def markdown(value) -> str:
    """For inline Markdown (a table cell, a heading): raw HTML is neutralised as
    entities, and punctuation that would format, link or end a cell is
    backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _html.escape(line(value), quote=False))


def xml(value) -> str:
    """Text XML 1.0 can carry; ElementTree escapes the markup characters itself."""
    return _XML_INVALID.sub(lambda match: "\\u%04x" % ord(match.group()), line(value))
