# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later

from __future__ import annotations


class ModuleDocFragment:
    # Options shared by the modules that change tracing state and keep a ledger.
    DOCUMENTATION = r"""
options:
  session:
    description:
      - Name under which this task's changes are recorded in the ledger, so that
        M(tracefleet.ftrace.teardown) can undo one session's changes and leave another's.
      - A name with a newline or another control character is refused.
    type: str
    default: default
  ledger_path:
    description:
      - The ledger on the target that records what tracefleet changed (instances
        created, knobs changed with their original values, list entries added or
        removed, mounts made). Written atomically under a lock.
    type: path
    default: /var/lib/tracefleet/ledger.json
  tracefs_path:
    description:
      - The tracefs directory to work in. By default the one C(/proc/self/mountinfo)
        names (C(/sys/kernel/tracing) when mounted there).
      - The module fails, naming lockdown where that is the cause, when tracefs is not
        mounted or not usable. Mount it with M(tracefleet.ftrace.tracefs).
    type: path
notes:
  - Needs root (use become) to change tracing state.
"""

    # The ledger option alone, for modules that keep or read the ledger without the
    # session/tracefs_path options (tracefs, tracefs_info).
    LEDGER = r"""
options:
  ledger_path:
    description:
      - The ledger on the target that records what tracefleet changed (instances
        created, knobs changed with their original values, list entries added or
        removed, mounts made). Written atomically under a lock; read-only modules only
        read it.
    type: path
    default: /var/lib/tracefleet/ledger.json
"""

    # The instance option, for modules that work in one tracing directory.
    INSTANCE = r"""
options:
  instance:
    description:
      - The tracefs instance to work in (see M(tracefleet.ftrace.trace_instance)).
      - When omitted the module works on the top-level buffer, which other tracers on the
        host share; changes there are recorded with their original values so that
        M(tracefleet.ftrace.teardown) restores them.
    type: str
"""
