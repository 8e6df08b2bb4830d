"""`vmsnap console`: the web console (console/), on loopback and read-only by default.

    vmsnap console                                  # http://127.0.0.1:8090, read-only
    vmsnap console --allow-actions --token-file /run/secrets/console-token
    vmsnap console --host 0.0.0.0 --trusted-user-header X-Forwarded-User --allow-actions

It connects as every verb does (the options before the verb, TEMPORAL_*, KUBECONFIG);
docs/console.md says how to authenticate its users and what its actions do.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated

import typer

from rules.durations import parse_duration
from rules.namespace_scope import NamespaceScope
from starter.cli_common import fail, make_client, usage_error

TOKEN_ENV = "VMSNAP_CONSOLE_TOKEN"
USER_HEADER_ENV = "VMSNAP_CONSOLE_USER_HEADER"
TEMPORAL_UI_ENV = "VMSNAP_TEMPORAL_UI"
NAMESPACES_ENV = "VMSNAP_CONSOLE_NAMESPACES"


def console(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="address to listen on (beyond loopback only "
                                      "with a token or a trusted user header)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8090,
    allow_actions: Annotated[bool, typer.Option(
        "--allow-actions", help="enable snapshot, restore, clone, delete and schedule "
        "actions (default: read-only)")] = False,
    token: Annotated[str | None, typer.Option(
        envvar=TOKEN_ENV, show_envvar=True, show_default=False,
        help="a secret users sign in with (or send as 'Authorization: Bearer')")] = None,
    token_file: Annotated[Path | None, typer.Option(
        help="read the token from this file (a mounted Secret)", show_default=False)] = None,
    trusted_user_header: Annotated[str | None, typer.Option(
        envvar=USER_HEADER_ENV, show_envvar=True, show_default=False,
        help="a header an authenticating proxy sets to the user's name (e.g. "
        "X-Forwarded-User); trusted only when given")] = None,
    namespaces: Annotated[str | None, typer.Option(
        envvar=NAMESPACES_ENV, show_envvar=True, show_default=False,
        help="the Kubernetes namespaces it shows and acts in, comma-separated (default: "
        "all; the worker's VMSNAP_NAMESPACES still refuses what it does not serve)")] = None,
    temporal_ui: Annotated[str | None, typer.Option(
        envvar=TEMPORAL_UI_ENV, show_envvar=True, show_default=False,
        help="the Temporal UI's URL, to link each run to it")] = None,
    fresh_for: Annotated[str, typer.Option(
        help="how old a VM's last snapshot may be when no schedule covers it")] = "24h",
) -> None:
    """Serve the web console: VMs, snapshots, schedules and operations, with actions."""
    try:
        from console.server import serve
        from console.settings import ConsoleConfigError, ConsoleSettings
    except ImportError as missing:
        fail(f"the console needs its extra: pip install 'vmsnap[console]' ({missing.name} "
             "is missing)")
    if token_file is not None:
        try:
            token = token_file.read_text().strip()
        except OSError as error:
            usage_error(f"--token-file {token_file}: {error.strerror or error}")
    try:
        settings = ConsoleSettings(
            host=host, port=port, allow_actions=allow_actions, token=token or None,
            user_header=trusted_user_header or None,
            scope=NamespaceScope.parse(namespaces), temporal_ui=temporal_ui or None,
            fresh_for=parse_duration(fresh_for))
    except (ConsoleConfigError, ValueError) as error:
        usage_error(str(error).replace("VMSNAP_NAMESPACES", "--namespaces"))
    os.environ.pop(TOKEN_ENV, None)  # nothing the console starts inherits it
    with contextlib.suppress(KeyboardInterrupt):
        serve(settings, make_client(ctx))
