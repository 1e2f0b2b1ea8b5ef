# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""Each role's meta/argument_specs.yml (what `ansible-doc -t role` shows and Ansible
validates) says the same defaults as its defaults/main.yml (what the role uses)."""

from __future__ import annotations

import os

import pytest
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
ROLES = sorted(os.listdir(os.path.join(ROOT, "roles")))
ROLES = [role for role in ROLES if os.path.isdir(os.path.join(ROOT, "roles", role))]


def load(role: str, *path: str) -> dict:
    with open(os.path.join(ROOT, "roles", role, *path), encoding="utf-8") as handle:
        return yaml.safe_load(handle) or {}


def test_every_role_is_checked():
    assert set(ROLES) == {"compliance", "session", "tracefs"}


@pytest.mark.parametrize("role", ROLES)
def test_defaults_match_the_argument_spec(role):
    defaults = load(role, "defaults", "main.yml")
    options = load(role, "meta", "argument_specs.yml")["argument_specs"]["main"]["options"]
    assert set(defaults) <= set(options), "variables in defaults/main.yml without a spec"
    for name, spec in options.items():
        if spec.get("required"):
            assert name not in defaults, "%s is required, so it has no default" % name
            continue
        # A spec without a default documents null, which is what an unset default reads as.
        assert spec.get("default") == defaults.get(name), name
