# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""One set of unit tests for every ansible-core minor the collection claims (2.17 to 2.19).

The tests use two names that ansible-core 2.19 introduced:
``ansible.module_utils.testing.patch_module_args`` (hands arguments to the
``AnsibleModule`` a test creates) and ``ansible.module_utils._internal.is_controller``
(a process-wide flag the action-plugin tests put back after each test). On 2.17 and
2.18 this file provides both under the same names, with the behaviour those versions
have (module arguments come from ``basic._ANSIBLE_ARGS``; there is no controller
flag to reset). On 2.19 it changes nothing: it only adds what is missing.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import types
from typing import Any, Iterator
from unittest import mock

import ansible.module_utils
from ansible.module_utils import basic


def _provide(name: str, doc: str, **attributes: Any) -> None:
    """Give ``ansible.module_utils.<name>`` the attributes this ansible-core lacks
    (2.18 has ``_internal`` without ``is_controller``; 2.17 has neither module)."""
    full_name = "ansible.module_utils." + name
    try:
        module = importlib.import_module(full_name)
    except ImportError:
        module = types.ModuleType(full_name, doc)
        sys.modules[full_name] = module
        setattr(ansible.module_utils, name, module)
    for key, value in attributes.items():
        if not hasattr(module, key):
            setattr(module, key, value)


@contextlib.contextmanager
def _patch_module_args(args: dict[str, Any] | None = None) -> Iterator[None]:
    """2.19's ``patch_module_args`` as older ansible-core reads module arguments."""
    payload = json.dumps({"ANSIBLE_MODULE_ARGS": args or {}}).encode()
    with mock.patch.object(basic, "_ANSIBLE_ARGS", payload):
        yield


_provide(
    "testing", "ansible-core 2.19's module test helpers, for older versions.", patch_module_args=_patch_module_args
)
_provide("_internal", "ansible-core 2.19's controller flag, inert on older versions.", is_controller=False)
