"""The console's web application: pages rendered on the server (Jinja2), htmx for the
parts that follow live work (running operations, an operation's progress), forms for
every action, each behind a confirmation page that says what will happen."""

from __future__ import annotations

import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from console import actions, gather
from console.chart import bar_chart_svg
from console.protection import PROTECTION_WORDS
from console.security import (
    COOKIE,
    CSRF_FIELD,
    CSRF_HEADER,
    SESSION_SECONDS,
    Session,
    Sessions,
    identify,
    same_secret,
)
from console.settings import ConsoleSettings
from rules.durations import format_go_duration, human_duration
from starter.connection import ConnectionConfigError, TemporalUnreachable
from starter.sdk import InvalidRequest, ObjectNotFound, VmsnapClient, VmsnapError

HERE = Path(__file__).resolve().parent
OPEN_PATHS = ("/static/", "/healthz")
Handler = Callable[[Request], Awaitable[Response]]


class Refused(Exception):
    """A request the console refuses before anything is read or started (HTTP status)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _age(when: datetime | None) -> str:
    if when is None:
        return "-"
    return human_duration(max(0.0, (datetime.now(UTC) - when).total_seconds()))


def _until(when: datetime | None) -> str:
    if when is None:
        return "-"
    return "in " + human_duration(max(0.0, (when - datetime.now(UTC)).total_seconds()))


def _timestamp(when: datetime | None) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if when else "-"


def build_app(settings: ConsoleSettings, client: VmsnapClient) -> Starlette:
    """The application; `client` is the SDK client every page reads and acts through."""
    sessions = Sessions()
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    environment.filters.update(age=_age, until=_until, timestamp=_timestamp,
                               go_duration=format_go_duration)
    environment.globals.update(settings=settings, protection_words=PROTECTION_WORDS,
                               quiesce_choices=actions.QUIESCE_CHOICES,
                               run_strategies=actions.RUN_STRATEGIES,
                               csrf_field=CSRF_FIELD, csrf_header=CSRF_HEADER)
    templates = Jinja2Templates(env=environment)

    def temporal_ui(workflow_id: str | None, run_id: str | None = None) -> str | None:
        if settings.temporal_ui is None or not workflow_id:
            return None
        try:
            namespace = client.connection_settings().namespace
        except ConnectionConfigError:
            return None
        path = f"/namespaces/{urllib.parse.quote(namespace, safe='')}/workflows/" \
               f"{urllib.parse.quote(workflow_id, safe='')}"
        if run_id:
            path += f"/{urllib.parse.quote(run_id, safe='')}/history"
        return settings.temporal_ui.rstrip("/") + path

    environment.globals["temporal_ui"] = temporal_ui

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        session: Session = request.state.session
        notice, session.notice = session.notice, None
        return templates.TemplateResponse(
            request, name, {"user": request.state.user, "csrf": session.csrf,
                            "notice": notice, **context},
            status_code=status_code)

    def in_scope(namespace: str) -> None:
        if not settings.scope.serves(namespace):
            raise Refused(403, f"namespace {namespace} is outside this console's namespaces "
                          f"({settings.scope.describe()}); nothing was read or started")

    def acting(request: Request) -> None:
        if not settings.allow_actions:
            raise Refused(403, "this console is read-only: actions are enabled only when it "
                          "is started with --allow-actions")

    async def checked_form(request: Request) -> FormData:
        """The form of a POST whose CSRF token is the session's and whose origin, when the
        browser says it, is this console; otherwise refused before anything happens."""
        origin = request.headers.get("origin")
        if origin and urllib.parse.urlsplit(origin).netloc != request.headers.get("host"):
            raise Refused(403, "the form was sent from another site (Origin "
                          f"{origin}); nothing was started")
        form = await request.form()
        given = request.headers.get(CSRF_HEADER) or cast(str | None, form.get(CSRF_FIELD))
        if not same_secret(given, request.state.session.csrf):
            raise Refused(403, "the form's CSRF token is missing or stale (reload the page "
                          "and try again); nothing was started")
        return form

    def plain(form: FormData) -> dict[str, str]:
        return {key: value for key, value in form.items() if isinstance(value, str)}

    # ---- pages ---------------------------------------------------------------------------

    async def home(request: Request) -> Response:
        return RedirectResponse("/vms", 303)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def vm_list(request: Request) -> Response:
        query = request.query_params
        namespace = query.get("namespace") or None
        if namespace is not None:
            in_scope(namespace)
        listing = await gather.vm_list(
            client, settings, namespace, query.get("q", ""), query.get("protection", ""),
            query.get("status", ""))
        template = "vm_rows.html" if request.headers.get("hx-request") and \
            request.headers.get("hx-target") == "vm-table" else "vm_list.html"
        return render(request, template, listing=listing, q=query.get("q", ""),
                      protection=query.get("protection", ""), status=query.get("status", ""))

    async def vm_page(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["vm"]
        in_scope(namespace)
        page = await gather.vm_page(client, settings, namespace, name)
        if page is None:
            raise Refused(404, f"VirtualMachine {namespace}/{name} not found")
        return render(request, "vm.html", page=page, namespace=namespace)

    async def vm_running(request: Request) -> Response:
        """The VM page's running operations, polled while anything runs."""
        namespace, name = request.path_params["namespace"], request.path_params["vm"]
        in_scope(namespace)
        runs = await client.list_runs(namespace, vm=name, limit=gather.RECENT_RUNS)
        return render(request, "running.html", running=await gather.running_states(client, runs),
                      namespace=namespace, vm=name)

    async def fleet(request: Request) -> Response:
        figures = await gather.fleet(client, settings)
        chart = bar_chart_svg("Freeze window of usable snapshots", figures.freeze)
        return render(request, "fleet.html", fleet=figures, chart=chart)

    async def operation(request: Request) -> Response:
        """An operation's page; `?fragment=1` is its state alone (htmx polls it)."""
        kind, workflow_id = request.path_params["operation"], request.query_params.get("id", "")
        if not workflow_id:
            raise Refused(400, "no workflow ID given (?id=...)")
        state = await client.run_state(kind, workflow_id)
        if state.namespace is not None:
            in_scope(state.namespace)
        template = "operation_state.html" if request.query_params.get("fragment") \
            else "operation.html"
        return render(request, template, state=state)

    # ---- actions: a confirmation page (GET), then the form (POST) ------------------------

    async def snapshot_action(request: Request) -> Response:
        namespace, vm = request.path_params["namespace"], request.path_params["vm"]
        in_scope(namespace)
        acting(request)
        error = None
        if request.method == "POST":
            form = await checked_form(request)
            try:
                started = await actions.snapshot(client, namespace, vm, plain(form))
                return _follow(started)
            except (VmsnapError, ValueError) as refused:
                error = str(refused)
        quiesce = request.query_params.get("quiesce", "auto")
        plan = await client.plan_snapshot(namespace, vm, quiesce if quiesce in
                                          actions.QUIESCE_CHOICES else "auto")
        return render(request, "confirm_snapshot.html", status_code=409 if error else 200,
                      namespace=namespace, vm=vm, plan=plan, error=error)

    async def restore_action(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["snapshot"]
        in_scope(namespace)
        acting(request)
        snapshot = await client.get_snapshot(namespace, name, progress=False)
        error, values = None, {}
        if request.method == "POST":
            values = plain(await checked_form(request))
            try:
                return _follow(await actions.restore(client, namespace, name, values))
            except (VmsnapError, ValueError) as refused:
                error = str(refused)
        return render(request, "confirm_restore.html", status_code=409 if error else 200,
                      namespace=namespace, snapshot=snapshot, error=error, values=values)

    async def clone_action(request: Request) -> Response:
        namespace = request.path_params["namespace"]
        source_snapshot = request.path_params.get("snapshot")
        source_vm = request.path_params.get("vm")
        in_scope(namespace)
        acting(request)
        snapshot = None if source_snapshot is None else await client.get_snapshot(
            namespace, source_snapshot, progress=False)
        error, values = None, {}
        if request.method == "POST":
            values = plain(await checked_form(request))
            fields = {**values, "source_snapshot": source_snapshot or "",
                      "source_vm": source_vm or ""}
            try:
                return _follow(await actions.clone(client, namespace, fields))
            except (VmsnapError, ValueError) as refused:
                error = str(refused)
        return render(request, "confirm_clone.html", status_code=409 if error else 200,
                      namespace=namespace, snapshot=snapshot, source_vm=source_vm,
                      error=error, values=values)

    async def delete_action(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["snapshot"]
        in_scope(namespace)
        acting(request)
        snapshot = await client.get_snapshot(namespace, name, progress=False)
        error = None
        if request.method == "POST":
            await checked_form(request)
            try:
                return _follow(await actions.delete(client, namespace, name))
            except VmsnapError as refused:
                error = str(refused)
        return render(request, "confirm_delete.html", status_code=409 if error else 200,
                      namespace=namespace, snapshot=snapshot, error=error)

    async def schedule_action(request: Request) -> Response:
        namespace, name = request.path_params["namespace"], request.path_params["schedule"]
        verb = request.path_params["verb"]
        in_scope(namespace)
        acting(request)
        if verb not in ("pause", "resume", "trigger"):
            raise Refused(404, f"no schedule action {verb!r} (pause, resume, trigger)")
        schedule = await client.get_schedule(namespace, name, run_status=0)
        back = request.query_params.get("vm")
        error = None
        if request.method == "POST":
            await checked_form(request)
            try:
                message = await actions.schedule(client, namespace, name, verb,
                                                 request.state.user)
            except VmsnapError as refused:
                error = str(refused)
            else:
                request.state.session.notice = message
                target = f"/ns/{namespace}/vms/{back}" if back else "/vms?namespace=" + namespace
                return RedirectResponse(target, 303)
        return render(request, "confirm_schedule.html", status_code=409 if error else 200,
                      namespace=namespace, schedule=schedule, verb=verb, error=error, back=back)

    def _follow(started: actions.Started) -> Response:
        query = urllib.parse.urlencode({"id": started.workflow_id})
        return RedirectResponse(f"/operations/{started.operation}?{query}", 303)

    # ---- login -----------------------------------------------------------------------------

    async def login(request: Request) -> Response:
        error = None
        next_page = request.query_params.get("next", "/vms")
        if not next_page.startswith("/") or next_page.startswith("//"):
            next_page = "/vms"
        if request.method == "POST":
            form = await checked_form(request)
            if settings.token is not None and same_secret(
                    cast(str | None, form.get("token")), settings.token):
                session = sessions.renew(request.state.session, "token")
                response = RedirectResponse(next_page, 303)
                _set_cookie(response, session)
                return response
            error = "that token is not this console's token"
        return render(request, "login.html", status_code=401 if error or (request.method == "GET"
                      and request.state.user is None) else 200, error=error, next=next_page)

    async def logout(request: Request) -> Response:
        await checked_form(request)
        sessions.drop(request.state.session)
        response = RedirectResponse("/login", 303)
        response.delete_cookie(COOKIE)
        return response

    # ---- the frame: sessions, authentication, errors -----------------------------------------

    def _set_cookie(response: Response, session: Session) -> None:
        response.set_cookie(COOKIE, session.id, max_age=SESSION_SECONDS, httponly=True,
                            samesite="strict", secure=False, path="/")

    async def frame(request: Request, call_next: RequestResponseEndpoint) -> Response:
        if request.url.path.startswith(OPEN_PATHS):
            return await call_next(request)
        known = sessions.get(request.cookies.get(COOKIE))
        session = known or sessions.new()
        request.state.session = session
        request.state.user = identify(request, session, settings.token, settings.user_header)
        if request.state.user is None and request.url.path != "/login":
            if request.method == "GET" and settings.token is not None:
                response: Response = RedirectResponse(
                    "/login?" + urllib.parse.urlencode({"next": request.url.path}), 303)
            else:
                response = PlainTextResponse("not authenticated: this console needs a token "
                                             "or an authenticating proxy", 401)
        else:
            response = await call_next(request)
        if known is None and COOKIE not in response.headers.get("set-cookie", ""):
            _set_cookie(response, session)
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; "
            "script-src 'self'; frame-ancestors 'none'; form-action 'self'")
        return response

    def guarded(handler: Handler) -> Handler:
        """Refusals and the SDK's errors as a page with one clear line, never a traceback."""
        async def run(request: Request) -> Response:
            try:
                return await handler(request)
            except Refused as refused:
                return render(request, "message.html", status_code=refused.status,
                              message=refused.message)
            except ObjectNotFound as missing:
                return render(request, "message.html", status_code=404, message=str(missing))
            except InvalidRequest as bad:
                return render(request, "message.html", status_code=400, message=str(bad))
            except (VmsnapError, TemporalUnreachable, ConnectionConfigError) as error:
                return render(request, "message.html", status_code=502, message=str(error))
        return run

    both = ["GET", "POST"]
    routes = [
        Route("/", home),
        Route("/healthz", healthz),
        Route("/login", guarded(login), methods=both),
        Route("/logout", guarded(logout), methods=["POST"]),
        Route("/vms", guarded(vm_list)),
        Route("/fleet", guarded(fleet)),
        Route("/operations/{operation}", guarded(operation)),
        Route("/ns/{namespace}/vms/{vm}", guarded(vm_page)),
        Route("/ns/{namespace}/vms/{vm}/running", guarded(vm_running)),
        Route("/ns/{namespace}/vms/{vm}/snapshot", guarded(snapshot_action), methods=both),
        Route("/ns/{namespace}/vms/{vm}/clone", guarded(clone_action), methods=both),
        Route("/ns/{namespace}/snapshots/{snapshot}/restore", guarded(restore_action),
              methods=both),
        Route("/ns/{namespace}/snapshots/{snapshot}/clone", guarded(clone_action),
              methods=both),
        Route("/ns/{namespace}/snapshots/{snapshot}/delete", guarded(delete_action),
              methods=both),
        Route("/ns/{namespace}/schedules/{schedule}/{verb}", guarded(schedule_action),
              methods=both),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            client.close()

    async def not_found(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        return PlainTextResponse(str(getattr(exc, "detail", "error")), status)

    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=frame)],
                     lifespan=lifespan, exception_handlers={HTTPException: not_found})
