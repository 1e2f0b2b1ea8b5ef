# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one escaping helper of the report writers: host text becomes one harmless line."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _escape


@pytest.mark.parametrize(
    "text, line",
    [
        ("plain", "plain"),
        (None, ""),
        (5, "5"),
        ("two\nlines\r\n\tand tabs", "two lines and tabs"),
        ("esc\x1b[2J", "esc\\x1b[2J"),
        ("nul\x00", "nul\\x00"),
        ("bell\x07 del\x7f nel\x85", "bell\\x07 del\\x7f nel\\x85"),
        ("sep\u2028par\u2029", "sep\\u2028par\\u2029"),
        ("bidi\u202eevil\u2066", "bidi\\u202eevil\\u2066"),
        ("lone\udcff", "lone\\udcff"),
        ("ünïcode ✓ 日本", "ünïcode ✓ 日本"),
    ],
)
def test_line(text, line):
    assert _escape.line(text) == line
    _escape.line(text).encode("utf-8")


def test_formats():
    hostile = '<b a="1">&x</b>|`*_[l](u)#\n\x1b'
    assert _escape.html(hostile) == "&lt;b a=&quot;1&quot;&gt;&amp;x&lt;/b&gt;|`*_[l](u)# \\x1b"
    assert _escape.markdown(hostile) == '&lt;b a="1"&gt;&amp;x&lt;/b&gt;\\|\\`\\*\\_\\[l\\](u)\\# \\\\x1b'
    element = ET.Element("x", name=_escape.xml("a\ufffe\x1b"))
    assert ET.fromstring(ET.tostring(element)).get("name") == "a\\ufffe\\x1b"
