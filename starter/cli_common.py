"""What every `vmsnap` verb shares: options, the default namespace, output, and errors.

Errors are one line on stderr (`error: ...`) and a non-zero exit code, never a
traceback (VMSNAP_DEBUG=1 shows it): 1 when the work failed or was refused,
2 for bad input (as click does for bad options). Input is checked before
anything is contacted, so bad input changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, Protocol, TypeVar

import typer
import yaml
from pydantic import BaseModel, ValidationError
from rich.console import Console
from rich.table import Table

from cluster.errors import ClusterError
from rules.durations import human_duration, parse_duration
from starter.cli_selectors import parse_selector
from starter.connection import ConnectionConfigError, TemporalUnreachable
from starter.sdk import InvalidRequest, VmsnapClient, VmsnapError, WorkflowFailed

T = TypeVar("T")

EXIT_FAILED = 1
EXIT_USAGE = 2
DEFAULT_NAMESPACE = "default"


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


class ListOutput(StrEnum):
    """The list verbs' outputs: kubectl's, `wide` being the table with more columns."""

    table = "table"
    wide = "wide"
    json = "json"
    yaml = "yaml"

    @property
    def is_table(self) -> bool:
        return self in (ListOutput.table, ListOutput.wide)


# ---- options (shared spellings, kubectl's where kubectl has one) ------------------------------

NamespaceOption = Annotated[str | None, typer.Option(
    "--namespace", "-n", help="Kubernetes namespace (default: the kubeconfig context's, "
    "else default)", show_default=False)]
AllNamespacesOption = Annotated[bool, typer.Option(
    "--all-namespaces", "-A", help="every namespace")]
OutputOption = Annotated[Output, typer.Option(
    "--output", "-o", help="table, json or yaml", case_sensitive=False)]
ListOutputOption = Annotated[ListOutput, typer.Option(
    "--output", "-o", help="table, wide (more columns), json or yaml", case_sensitive=False)]
SelectorOption = Annotated[str | None, typer.Option(
    "--selector", "-l", help="label selector, as kubectl's (app=web,tier in (a,b),!legacy)",
    show_default=False)]


@dataclass
class GlobalOptions:
    """Connection options given before the verb (`vmsnap --context prod snapshot list`)."""

    kubeconfig: str | None = None
    context: str | None = None
    address: str | None = None
    temporal_namespace: str | None = None
    profile: str | None = None
    task_queue: str | None = None


def global_options(ctx: typer.Context) -> GlobalOptions:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, GlobalOptions) else GlobalOptions()


# ---- the default namespace -------------------------------------------------------------------


def kubeconfig_namespace(kubeconfig: str | None = None, context: str | None = None) -> str | None:
    """The namespace of the kubeconfig's (current or given) context, as kubectl reads it:
    --kubeconfig, else each file of $KUBECONFIG in order, else ~/.kube/config."""
    if kubeconfig:
        paths = [Path(kubeconfig).expanduser()]
    elif os.environ.get("KUBECONFIG"):
        paths = [Path(p).expanduser() for p in os.environ["KUBECONFIG"].split(os.pathsep) if p]
    else:
        paths = [Path("~/.kube/config").expanduser()]
    documents = []
    for path in paths:
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError):
            continue
        if isinstance(loaded, dict):
            documents.append(loaded)
    current = context or next(
        (d["current-context"] for d in documents if d.get("current-context")), None)
    if not current:
        return None
    for document in documents:
        for entry in document.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name") == current:
                namespace = (entry.get("context") or {}).get("namespace")
                return str(namespace) if namespace else None
    return None


def resolve_namespace(ctx: typer.Context, namespace: str | None) -> str:
    if namespace:
        check_name(namespace, "namespace", subdomain=False)
        return namespace
    options = global_options(ctx)
    return kubeconfig_namespace(options.kubeconfig, options.context) or DEFAULT_NAMESPACE


# ---- input checks (one line, exit 2, before anything is contacted) ----------------------------


def usage_error(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_USAGE)


def check_name(value: str, what: str, *, subdomain: bool = True) -> str:
    from rules.validation import check_dns_label, check_dns_subdomain

    try:
        return (check_dns_subdomain if subdomain else check_dns_label)(value, what)
    except ValueError as error:
        usage_error(str(error))


def check_duration(value: str | None, flag: str) -> str | None:
    """Validate a Go-style duration now; the models parse it again (one grammar)."""
    if value is None:
        return None
    try:
        parse_duration(value)
    except ValueError as error:
        usage_error(f"{flag}: {error}")
    return value


def check_selector(value: str | None) -> str | None:
    """Validate a label selector now (one line, exit 2) rather than at the API server."""
    if value is None:
        return None
    try:
        parse_selector(value)
    except ValueError as error:
        usage_error(f"--selector: {error}")
    return value.strip()


def parse_labels(values: list[str] | None, flag: str = "--label") -> dict[str, str]:
    labels: dict[str, str] = {}
    for value in values or []:
        key, sep, label = value.partition("=")
        if not sep or not key:
            usage_error(f"{flag} {value!r}: expected key=value")
        labels[key] = label
    return labels


def build(model: Callable[..., T], flags: dict[str, str], **fields: Any) -> T:
    """Construct a request model; its first error names the CLI flag, not the field."""
    try:
        return model(**fields)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        message = str(first["msg"]).removeprefix("Value error, ")
        where = flags.get(field, field.replace("_", "-"))
        usage_error(f"{where}: {message}" if where else message)


# ---- running a verb --------------------------------------------------------------------------


def make_client(ctx: typer.Context) -> VmsnapClient:
    options = global_options(ctx)
    return VmsnapClient(kubeconfig=options.kubeconfig, context=options.context,
                        task_queue=options.task_queue, address=options.address,
                        temporal_namespace=options.temporal_namespace, profile=options.profile)


def run(ctx: typer.Context, work: Callable[[VmsnapClient], Awaitable[int | None]]) -> None:
    """Run an async verb with a client; known failures become one line and exit code 1."""
    client = make_client(ctx)

    async def main() -> int | None:
        try:
            return await work(client)
        finally:
            client.close()

    try:
        code = asyncio.run(main())
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        typer.echo("error: interrupted", err=True)
        raise typer.Exit(130) from None
    except InvalidRequest as error:
        fail(str(error), EXIT_USAGE)
    except (VmsnapError, TemporalUnreachable, ConnectionConfigError) as error:
        fail(str(error))
    except ClusterError as error:
        fail(f"Kubernetes API: {error.message}")
    except ValidationError as error:
        first = error.errors()[0]
        fail(str(first["msg"]).removeprefix("Value error, "), EXIT_USAGE)
    except Exception as error:  # a bug: still one line, the trace on request
        if os.environ.get("VMSNAP_DEBUG"):
            traceback.print_exc()
        fail(f"unexpected {type(error).__name__}: {error} (VMSNAP_DEBUG=1 shows the traceback)")
    if code:
        raise typer.Exit(code)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


# ---- output ----------------------------------------------------------------------------------


def console(err: bool = False) -> Console:
    """Rich console; wide and plain when not a terminal, so columns are never cut."""
    stream = sys.stderr if err else sys.stdout
    terminal = stream.isatty()
    return Console(file=stream, width=None if terminal else 250, highlight=False,
                   soft_wrap=not terminal, force_terminal=None if terminal else False)


def show(renderable: Any) -> None:
    """Print a table on stdout; off a terminal, without rich's padding at line ends."""
    out = console()
    if out.is_terminal:
        out.print(renderable)
        return
    with out.capture() as captured:
        out.print(renderable)
    typer.echo("\n".join(line.rstrip() for line in captured.get().splitlines()))


def emit_data(data: Any, output: Output | ListOutput) -> None:
    """JSON or YAML of models (or lists of them) on stdout."""
    plain = _plain(data)
    if output == Output.json:
        typer.echo(json.dumps(plain, indent=2))
    else:
        typer.echo(yaml.safe_dump(plain, sort_keys=False).rstrip())


def _plain(data: Any) -> Any:
    if isinstance(data, BaseModel):
        return data.model_dump(mode="json")
    if isinstance(data, list):
        return [_plain(d) for d in data]
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    return data


def table(columns: list[str]) -> Table:
    """A kubectl-looking table: upper-case headers, no borders."""
    result = Table(box=None, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        result.add_column(column, overflow="fold")
    return result


def age(seconds: float | None) -> str:
    """kubectl's AGE (rules.durations.human_duration: 45s, 3m12s, 3h20m, 2d2h); `<unknown>`
    without a time."""
    return "<unknown>" if seconds is None else human_duration(seconds)


# ---- following a restore or clone ------------------------------------------------------------


class _StepHandle(Protocol):
    async def result(self) -> Any: ...
    async def progress(self) -> Any: ...


async def follow_steps(handle: _StepHandle, out: Console, what: str,
                       interval: float = 0.5) -> Any:
    """Print each new step of a restore or clone (`progress` query: `step`, `result.phase`)
    until it ends; a spinner on a terminal, one plain line per step otherwise."""
    result = asyncio.create_task(handle.result())
    shown: str | None = None
    status = out.status(f"{what} starting ...") if out.is_terminal else None
    try:
        if status is not None:
            status.start()
        while not result.done():
            with contextlib.suppress(VmsnapError):
                progress = await handle.progress()
                line = f"{what}: {progress.step} (phase {progress.result.phase})"
                if line != shown:
                    shown = line
                    if status is not None:
                        status.update(line)
                    else:
                        out.print(line, highlight=False)
            await asyncio.wait([result], timeout=interval)
        return await result
    finally:
        if status is not None:
            status.stop()
        if not result.done():
            result.cancel()
            with contextlib.suppress(asyncio.CancelledError, VmsnapError):
                await result


async def finish_operation(handle: _StepHandle, info: Console, what: str, failed_as: str,
                           failure_type: type[WorkflowFailed], output: Output,
                           show: Callable[[Console, Any], None]) -> int:
    """`--wait` for a restore or clone: follow its steps, then print the result (or, on
    failure, the result as data for -o json|yaml and one error line); the exit code."""
    try:
        result = await follow_steps(handle, info, what)
    except failure_type as failure:
        partial = getattr(failure, "result", None)
        if output is not Output.table and partial is not None:
            emit_data(partial, output)
        typer.echo(f"error: {failed_as} failed: {failure.message} ({failure.error_type})",
                   err=True)
        return EXIT_FAILED
    if output is Output.table:
        show(console(), result)
    else:
        emit_data(result, output)
    return 0
