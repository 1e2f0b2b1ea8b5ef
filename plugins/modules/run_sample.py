# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

# This module is implemented as an action plugin (plugins/action/run_sample.py) and
# runs on the controller; this file holds its documentation only.

from __future__ import annotations

DOCUMENTATION = r"""
module: run_sample
short_description: Record the host sample of a capture run in its manifest
version_added: 0.1.0
description:
  - Draws the sample of O(hosts) that O(size) and O(seed) give (as the
    P(tracefleet.ftrace.sample#filter) filter does) and records it in the run's
    C(manifest.json), C(<run_dir>/manifest.json), as its C(sample) field - the
    method, O(group), the group's size, O(size), O(seed) and the sampled hosts - so that a run
    says which hosts were traced out of how many, and how to draw the same hosts again.
  - The C(tracefleet.ftrace.rollout) playbook uses it with C(rollout_sample).
  - Every host of a run may record the same sample (under C(serial), each batch does); the
    first writes it, under the manifest's lock, and the others find it there
    (RV(ignore:changed=false)). A run whose manifest already holds another sample is refused,
    and nothing is written - one run, one sample.
  - The run must exist (a capture of M(tracefleet.ftrace.trace_capture) made it). Runs entirely
    on the controller; it never contacts a host.
author:
  - tracefleet contributors (@tracefleet)
extends_documentation_fragment:
  - tracefleet.ftrace.attributes
  - tracefleet.ftrace.run
  - tracefleet.ftrace.attributes.CONTROLLER
  - ansible.builtin.action_common_attributes.conn
  - ansible.builtin.action_common_attributes.flow
attributes:
  check_mode:
    details:
      - The sample is drawn and returned; nothing is written.
options:
  group:
    description: The host pattern the sample was drawn from, as it is recorded.
    type: str
    required: true
  hosts:
    description: The hosts of the group, the population the sample was drawn from.
    type: list
    elements: str
    required: true
  size:
    description:
      - A count of hosts such as V(5), or a percentage of the group such as V("10%"), rounded
        down but at least one host.
    type: raw
    required: true
  seed:
    description:
      - The seed, a string or an integer (an integer and its decimal string are the same seed).
    type: raw
    required: true
seealso:
  - module: tracefleet.ftrace.trace_capture
  - plugin: tracefleet.ftrace.sample
    plugin_type: filter
"""

EXAMPLES = r"""
- name: Record which hosts of the web group the run traced
  tracefleet.ftrace.run_sample:
    run_dir: "{{ capture.manifest | dirname }}"
    group: web
    hosts: "{{ groups['web'] }}"
    size: 10%
    seed: incident-1234
  when: capture.manifest is defined
  run_once: true
  delegate_to: localhost
  become: false
"""

RETURN = r"""
sample:
  description: The sample as recorded in the manifest.
  returned: success
  type: dict
  contains:
    method:
      description: How the sample was drawn (the ranking of the P(tracefleet.ftrace.sample#filter) filter).
      type: str
      sample: sha256-rank-1
    group:
      description: O(group).
      type: str
      sample: web
    group_size:
      description: The number of hosts in O(hosts).
      type: int
      sample: 64
    size:
      description: O(size) as text.
      type: str
      sample: 10%
    seed:
      description: O(seed) as text.
      type: str
      sample: incident-1234
    hosts:
      description: The sampled hosts, sorted by name.
      type: list
      elements: str
      sample: [web07, web19, web33, web40, web51, web62]
manifest:
  description: The run's manifest.
  returned: success
  type: str
  sample: /srv/traces/20261127T031500Z-1a2b3c4d/manifest.json
msg:
  description: What was recorded.
  returned: always
  type: str
"""
