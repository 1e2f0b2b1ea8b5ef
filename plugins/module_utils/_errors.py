# Copyright: tracefleet contributors
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""The one base of tracefleet's own errors.

Every error the domain layer raises on purpose (bad input, a refusal by the kernel,
a host that cannot do what was asked) derives from `TracefleetError`, so a module's
`main()` turns every expected failure into `fail_json` with one `except`, and any
other exception is a bug that shows as one.
Private to the collection: no compatibility promise outside tracefleet.ftrace.
"""

from __future__ import annotations


class TracefleetError(Exception):
    """An expected failure, with a message fit for the user."""
