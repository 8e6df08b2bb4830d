"""End-to-end tests use the session's dev server, simulators and workers as real processes.

The fixtures (`dev_server`, `client`, `start_stack`, `stack`) are in tests/conftest.py,
shared with the fault suite; `Stack` and `StartStack` are re-exported here for the modules
that import them from this package.
"""

from __future__ import annotations

from tests.conftest import Stack, StartStack

__all__ = ["Stack", "StartStack"]
