"""Make the collection and the lab importable for plain pytest runs.

ansible resolves ``ansible_collections.tracefleet.ftrace`` through a directory named
``ansible_collections/tracefleet/ftrace``; build/collections holds a symlink of that
name to this checkout (``make collection`` creates it, and so does this file).
"""
from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COLLECTIONS = os.path.join(ROOT, "build", "collections")
LINK = os.path.join(COLLECTIONS, "ansible_collections", "tracefleet", "ftrace")

if os.path.basename(os.path.dirname(os.path.dirname(ROOT))) == "ansible_collections":
    # Already inside an ansible_collections tree (for example under ansible-test).
    COLLECTIONS = os.path.dirname(os.path.dirname(os.path.dirname(ROOT)))
elif not os.path.lexists(LINK):
    os.makedirs(os.path.dirname(LINK), exist_ok=True)
    os.symlink(os.path.join("..", "..", "..", ".."), LINK)

for path in (COLLECTIONS, os.path.join(ROOT, "lab")):
    if path not in sys.path:
        sys.path.insert(0, path)
