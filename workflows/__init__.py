"""Deterministic orchestration: sequencing, timers and sagas; no I/O, no clock but Temporal's."""
