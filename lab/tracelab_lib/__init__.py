"""Implementation of the tracelab CLI (standard library only)."""
