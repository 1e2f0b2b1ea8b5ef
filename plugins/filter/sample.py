# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The `sample` filter: a repeatable random sample of host names (documented in
sample.yml; the ranking is plugin_utils/_sample.py)."""

from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.tracefleet.ftrace.plugins.plugin_utils import _sample


def sample(hosts, size, seed):
    try:
        return _sample.draw(hosts, size, seed)
    except _sample.SampleError as exc:
        raise AnsibleFilterError("tracefleet.ftrace.sample: %s" % exc) from None


class FilterModule:
    def filters(self):
        return {"sample": sample}
