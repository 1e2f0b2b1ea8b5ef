# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Standard attribute documentation shared by the collection's modules.
    DOCUMENTATION = r"""
options: {}
attributes:
  check_mode:
    description: Can run in C(check_mode) and return changed status prediction without modifying target.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in C(check_mode)), when in diff mode.
  idempotent:
    description:
      - When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
      - This assumes that the system controlled/queried by the module has not changed in a relevant way.
"""

    # Attributes of the modules that change state with full check and diff support.
    FULL_SUPPORT = r"""
options: {}
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  idempotent:
    support: full
"""

    # Attributes of modules that only read and never change anything.
    INFO_MODULE = r"""
options: {}
attributes:
  check_mode:
    support: full
    details:
      - This action does not modify state.
  diff_mode:
    support: N/A
    details:
      - This action does not modify state.
  idempotent:
    support: full
"""

    # Actions that run on the controller only and never contact a host. A module adds its own
    # details to these attributes where it has something to say (fragments merge; its keys win).
    CONTROLLER = r"""
options: {}
attributes:
  bypass_host_loop:
    support: none
  check_mode:
    support: full
  diff_mode:
    support: none
  idempotent:
    support: full
  action:
    support: full
  async:
    support: none
  become:
    support: none
    details: It runs on the controller, as the controller's user; nothing runs on the hosts.
  connection:
    support: none
  delegation:
    support: none
    details: It runs on the controller whatever the delegation.
"""
