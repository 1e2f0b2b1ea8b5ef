# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The README indexes every guide, and every relative link in the README and the
guides leads to a file that exists and, with a #fragment, to a heading in it (named
the way GitHub names heading anchors)."""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
GUIDES = sorted(name for name in os.listdir(os.path.join(ROOT, "docs")) if name.endswith(".md"))
PAGES = ["README.md"] + ["docs/" + name for name in GUIDES]
LINK = re.compile(r"\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def read(page: str) -> str:
    with open(os.path.join(ROOT, page), encoding="utf-8") as handle:
        return handle.read()


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to -."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: str) -> set[str]:
    text = FENCE.sub("", read(page))
    return {anchor(match) for match in re.findall(r"^#{1,6} (.+)$", text, re.M)}


def links(page: str) -> list[str]:
    return LINK.findall(FENCE.sub("", read(page)))


def test_anchor_names():
    assert anchor("Use it on your fleet") == "use-it-on-your-fleet"
    assert anchor("How many hosts trace at once: forks") == "how-many-hosts-trace-at-once-forks"
    assert anchor("The lab: `lab/tracelab`") == "the-lab-labtracelab"


def test_readme_indexes_every_guide():
    indexed = {target for target in links("README.md") if target.startswith("docs/")}
    assert {"docs/" + name for name in GUIDES} <= indexed


@pytest.mark.parametrize("page", PAGES)
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        if re.match(r"[a-z]+:", target):
            continue
        path, _hash, fragment = target.partition("#")
        resolved = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
        exists = os.path.exists(os.path.join(ROOT, resolved))
        if not exists or (fragment and resolved.endswith(".md") and fragment not in anchors(resolved)):
            broken.append(target)
    assert not broken
