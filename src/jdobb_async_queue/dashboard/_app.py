"""The dashboard's Starlette application: pages, the JSON API, server-sent events, actions."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, asynccontextmanager
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._errors import InvalidJobError
from .._models import JobStatus
from .._queue import JobQueue
from ._data import STATUSES, Sampler, TypeCounts, job_json, stats_json, workers_of
from ._html import Page
from ._sse import JobEvents

__all__ = ["DEFAULT_TITLE", "COOKIE", "create_app"]

DEFAULT_TITLE = "jdobb-async-queue"
#: The cookie the login form sets (an HMAC of the token, never the token itself).
COOKIE = "jdobb_dashboard"
#: Largest form body an action accepts, in bytes.
MAX_FORM = 64 * 1024
#: Largest page of ``/jobs`` and ``/api/jobs``.
MAX_LIMIT = 500

STATIC = Path(__file__).parent / "static"

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]

#: Fixed messages for the ``?done=`` of a redirect after an action (no user text reflected).
NOTICES = {
    "cancel-1": "Cancelled.",
    "cancel-0": "Not cancelled: the job had already ended.",
    "retry-1": "Sent back to the queue.",
    "retry-0": "Not retried: only failed and cancelled jobs can be.",
}


class _SecurityHeaders:
    """Adds the CSP and friends to every response (a pure ASGI middleware: streams untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *SECURITY_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _Dashboard:
    def __init__(
        self,
        queue: JobQueue,
        *,
        token: str | None,
        read_only: bool,
        title: str,
        refresh: float,
        sample_interval: float,
        history: int,
    ) -> None:
        if token is not None and (not isinstance(token, str) or not token):
            raise ValueError("token must be a non-empty string or None")
        self.queue = queue
        self.token = token
        self.read_only = read_only
        self.title = title
        self.refresh_ms = max(100, int(refresh * 1000))
        self.sampler = Sampler(queue, interval=sample_interval, history=history)
        self.types = TypeCounts(queue, max_age=min(5.0, sample_interval))
        self.session = (
            None
            if token is None
            else hmac.new(token.encode(), b"jdobb-dashboard-session", hashlib.sha256).hexdigest()
        )

    # -- helpers ------------------------------------------------------------------------------

    def base(self, request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def authorized(self, request: Request, form: Mapping[str, list[str]] | None = None) -> bool:
        if self.token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and _same(value.strip(), self.token):
            return True
        if form is not None and _same(_first(form, "token") or "", self.token):
            return True
        cookie = request.cookies.get(COOKIE)
        return cookie is not None and self.session is not None and _same(cookie, self.session)

    def page(self, request: Request) -> Page:
        return Page(
            base=escape(self.base(request), quote=True),
            title=self.title,
            read_only=self.read_only,
            needs_login=not self.authorized(request),
            has_token=self.token is not None,
            refresh_ms=self.refresh_ms,
        )

    def html_error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return HTMLResponse(self.page(request).error(status, message), status_code=status)

    async def overview_data(self) -> dict[str, Any]:
        stats = stats_json(await self.queue.stats())
        by_type = await self.types.read()
        return {"stats": stats, "by_type": by_type, "truncated": self.types.truncated}

    # -- pages --------------------------------------------------------------------------------

    async def overview(self, request: Request) -> Response:
        await self.sampler.maybe_sample()
        data = await self.overview_data()
        workers = await workers_of(self.queue)
        html = self.page(request).overview(
            data["stats"], data["by_type"], data["truncated"], workers
        )
        return HTMLResponse(html)

    async def jobs_page(self, request: Request) -> Response:
        try:
            status, job_type, limit, offset = _list_args(request)
            jobs = await self.queue.list_jobs(
                status, job_type=job_type, limit=limit + 1, offset=offset
            )
        except InvalidJobError as exc:
            return self.html_error(request, 400, str(exc))
        types = (await self.types.read()).keys()
        notice = _list_notice(request)
        html = self.page(request).jobs(
            jobs[:limit],
            status=status,
            job_type=job_type,
            offset=offset,
            limit=limit,
            has_more=len(jobs) > limit,
            types=types,
            notice=notice,
        )
        return HTMLResponse(html)

    async def job_page(self, request: Request) -> Response:
        job = await self.queue.get(request.path_params["job_id"])
        if job is None:
            return self.html_error(request, 404, "No such job (it may have been purged).")
        deps: list[tuple[str, str | None]] = []
        for dep in job.depends_on:
            found = await self.queue.get(dep)
            deps.append((dep, None if found is None else found.status.value))
        notice = NOTICES.get(request.query_params.get("done", ""))
        return HTMLResponse(self.page(request).job(job, deps, notice))

    async def workers_page(self, request: Request) -> Response:
        return HTMLResponse(self.page(request).workers(await workers_of(self.queue)))

    async def login_page(self, request: Request) -> Response:
        if self.token is None:
            return RedirectResponse(f"{self.base(request)}/", status_code=303)
        next_path = _safe_next(request.query_params.get("next"), self.base(request))
        return HTMLResponse(self.page(request).login(next_path, None))

    async def login(self, request: Request) -> Response:
        try:
            form = await _form(request)
        except InvalidJobError as exc:
            return PlainTextResponse(str(exc), status_code=400)
        base = self.base(request)
        next_path = _safe_next(_first(form, "next"), base)
        if self.token is None or self.session is None:
            return RedirectResponse(next_path, status_code=303)
        if not _same(_first(form, "token") or "", self.token):
            html = self.page(request).login(next_path, "Wrong token.")
            return HTMLResponse(html, status_code=401)
        response = RedirectResponse(next_path, status_code=303)
        response.set_cookie(
            COOKIE,
            self.session,
            httponly=True,
            samesite="strict",
            path=base or "/",
            secure=request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        base = self.base(request)
        response = RedirectResponse(f"{base}/", status_code=303)
        response.delete_cookie(COOKIE, path=base or "/")
        return response

    # -- the JSON API -------------------------------------------------------------------------

    async def api_stats(self, request: Request) -> Response:
        return JSONResponse(await self.overview_data())

    async def api_jobs(self, request: Request) -> Response:
        try:
            status, job_type, limit, offset = _list_args(request)
            jobs = await self.queue.list_jobs(
                status, job_type=job_type, limit=limit + 1, offset=offset
            )
        except InvalidJobError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(
            {
                "jobs": [job_json(j) for j in jobs[:limit]],
                "limit": limit,
                "offset": offset,
                "has_more": len(jobs) > limit,
            }
        )

    async def api_job(self, request: Request) -> Response:
        job = await self.queue.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JSONResponse(job_json(job))

    async def api_workers(self, request: Request) -> Response:
        workers = await workers_of(self.queue)
        return JSONResponse({"supported": workers is not None, "workers": workers or []})

    async def api_throughput(self, request: Request) -> Response:
        await self.sampler.maybe_sample()
        return JSONResponse(self.sampler.series())

    async def api_events(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        if await self.queue.get(job_id) is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        return JobEvents(self.queue, job_id)

    # -- actions ------------------------------------------------------------------------------

    def guarded(
        self,
        act: Callable[[Request, Mapping[str, list[str]]], Awaitable[tuple[str, Any]]],
        *,
        api: bool,
    ) -> Callable[[Request], Awaitable[Response]]:
        """An action endpoint: same-origin and token checks, then ``act`` → JSON for
        ``/api/...`` and a 303 redirect for the pages' forms."""

        async def endpoint(request: Request) -> Response:
            if not _same_origin(request):
                return _refuse(request, api, 403, "cross-origin request refused", self)
            try:
                form = await _form(request)
            except InvalidJobError as exc:  # too large, not JSON, not an object
                return _refuse(request, api, 400, str(exc), self)
            if not self.authorized(request, form):
                if api:
                    return JSONResponse(
                        {"error": "a valid token is required"},
                        status_code=401,
                        headers={"www-authenticate": "Bearer"},
                    )
                back = request.headers.get("referer") or f"{self.base(request)}/"
                nxt = _safe_next(urlsplit(back).path + _query(back), self.base(request))
                return RedirectResponse(
                    f"{self.base(request)}/login?{urlencode({'next': nxt})}", status_code=303
                )
            try:
                redirect, result = await act(request, form)
            except InvalidJobError as exc:
                return _refuse(request, api, 400, str(exc), self)
            self.types.forget()
            if api:
                return JSONResponse(result)
            return RedirectResponse(f"{self.base(request)}{redirect}", status_code=303)

        return endpoint

    async def cancel(self, request: Request, form: Mapping[str, list[str]]) -> tuple[str, Any]:
        job_id = request.path_params["job_id"]
        reason = _first(form, "reason") or "cancelled from the dashboard"
        ok = await self.queue.cancel(job_id, reason)
        return f"{_job_path(job_id)}?done=cancel-{int(ok)}", {"ok": ok}

    async def retry(self, request: Request, form: Mapping[str, list[str]]) -> tuple[str, Any]:
        job_id = request.path_params["job_id"]
        ok = await self.queue.retry(job_id)
        return f"{_job_path(job_id)}?done=retry-{int(ok)}", {"ok": ok}

    async def retry_failed(
        self, request: Request, form: Mapping[str, list[str]]
    ) -> tuple[str, Any]:
        job_type = _first(form, "job_type") or None
        failed = await self.queue.list_jobs("failed", job_type=job_type, limit=None)
        retried = 0
        for job in failed:
            retried += bool(await self.queue.retry(job.id))
        query: dict[str, Any] = {"status": "pending", "retried": retried}
        if job_type:
            query["type"] = job_type
        return f"/jobs?{urlencode(query)}", {"retried": retried}

    async def purge(self, request: Request, form: Mapping[str, list[str]]) -> tuple[str, Any]:
        chosen = form.get("status") or form.get("statuses") or ["complete", "failed", "cancelled"]
        job_type = _first(form, "job_type") or None
        statuses = [JobStatus(s) for s in _check_statuses(chosen)]
        purged = await self.queue.purge(statuses, job_type=job_type)
        return f"/jobs?{urlencode({'purged': purged})}", {"purged": purged}

    # -- assembly -----------------------------------------------------------------------------

    def routes(self) -> list[BaseRoute]:
        routes: list[BaseRoute] = []
        if not self.read_only:
            for prefix, api in (("", False), ("/api", True)):
                actions = (
                    ("/jobs/retry-failed", self.retry_failed),
                    ("/jobs/purge", self.purge),
                    ("/jobs/{job_id:path}/cancel", self.cancel),
                    ("/jobs/{job_id:path}/retry", self.retry),
                )
                routes += [
                    Route(prefix + path, self.guarded(act, api=api), methods=["POST"])
                    for path, act in actions
                ]
            routes += [
                Route("/login", self.login_page, methods=["GET"]),
                Route("/login", self.login, methods=["POST"]),
                Route("/logout", self.logout, methods=["POST"]),
            ]
        routes += [
            Route("/", self.overview, methods=["GET"]),
            Route("/jobs", self.jobs_page, methods=["GET"]),
            Route("/workers", self.workers_page, methods=["GET"]),
            Route("/api/stats", self.api_stats, methods=["GET"]),
            Route("/api/jobs", self.api_jobs, methods=["GET"]),
            Route("/api/workers", self.api_workers, methods=["GET"]),
            Route("/api/throughput", self.api_throughput, methods=["GET"]),
            Route("/api/jobs/{job_id:path}/events", self.api_events, methods=["GET"]),
            Route("/api/jobs/{job_id:path}", self.api_job, methods=["GET"]),
            Route("/jobs/{job_id:path}", self.job_page, methods=["GET"]),
            Mount("/static", app=StaticFiles(directory=STATIC), name="static"),
        ]
        return routes


def create_app(
    queue: JobQueue,
    *,
    token: str | None = None,
    read_only: bool = False,
    title: str = DEFAULT_TITLE,
    refresh: float = 2.0,
    sample_interval: float = 5.0,
    history: int = 180,
) -> Starlette:
    """The web dashboard of ``queue``, as a Starlette (ASGI) application.

    Mount it in a FastAPI or Starlette app (``app.mount("/queue", create_app(queue))``) or serve
    it with :func:`~jdobb_async_queue.dashboard.serve`. It runs under asyncio and trio.

    :param queue: the queue to show; the app does not close it
    :param token: when set, the actions (cancel, retry, retry all failed, purge) need it: as an
        ``Authorization: Bearer <token>`` header, a ``token`` form field, or the cookie the
        ``/login`` form sets. Reading pages and the JSON API needs no token.
    :param read_only: no actions at all: no buttons, and their endpoints answer 404
    :param title: shown in the header and the browser's title bar
    :param refresh: seconds between the overview's refreshes in the browser
    :param sample_interval: seconds between two samples of ``queue.stats()`` for the
        throughput chart
    :param history: samples kept (the chart spans ``sample_interval * history`` seconds)
    """
    dashboard = _Dashboard(
        queue,
        token=token,
        read_only=read_only,
        title=title,
        refresh=refresh,
        sample_interval=sample_interval,
        history=history,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(dashboard.sampler.run)
            yield
            tg.cancel_scope.cancel()

    async def not_found(request: Request, exc: Exception) -> Response:
        if _relative_path(request).startswith("/api/"):
            return JSONResponse({"error": "not found"}, status_code=404)
        return dashboard.html_error(request, 404, "Not found.")

    async def not_allowed(request: Request, exc: Exception) -> Response:
        # Read-only mode has no action routes: a POST there is "not found", not "not allowed".
        if read_only or request.method == "POST":
            return await not_found(request, exc)
        message = "Method not allowed."
        if _relative_path(request).startswith("/api/"):
            return JSONResponse({"error": message}, status_code=405)
        return dashboard.html_error(request, 405, message)

    app = Starlette(
        routes=dashboard.routes(),
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: not_allowed},
    )
    app.add_middleware(_SecurityHeaders)
    app.state.queue = queue
    app.state.sampler = dashboard.sampler
    app.state.read_only = read_only
    return app


# -- small helpers ------------------------------------------------------------------------------


def _relative_path(request: Request) -> str:
    path = str(request.scope.get("path", ""))
    root = str(request.scope.get("root_path", ""))
    return path[len(root) :] if root and path.startswith(root) else path


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _first(form: Mapping[str, list[str]], key: str) -> str | None:
    values = form.get(key)
    return values[0] if values else None


def _query(url: str) -> str:
    query = urlsplit(url).query
    return f"?{query}" if query else ""


def _job_path(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}"


def _safe_next(value: str | None, base: str) -> str:
    """Only a path on this site: never ``//evil`` or ``https://evil``."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return f"{base}/"
    return value


def _same_origin(request: Request) -> bool:
    """A browser's POST from another site carries its ``Origin``: refuse it (CSRF)."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    host = request.headers.get("host")
    return origin != "null" and host is not None and urlsplit(origin).netloc == host


def _refuse(
    request: Request, api: bool, status: int, message: str, dashboard: _Dashboard
) -> Response:
    if api:
        return JSONResponse({"error": message}, status_code=status)
    return dashboard.html_error(request, status, message)


async def _form(request: Request) -> dict[str, list[str]]:
    """An urlencoded form, or a JSON object (its values as lists), at most ``MAX_FORM`` bytes."""
    if request.method != "POST":
        return {}
    body, size = b"", 0
    async with aclosing(request.stream()) as chunks:
        async for chunk in chunks:
            size += len(chunk)
            if size <= MAX_FORM:
                body += chunk
            elif size > 16 * MAX_FORM:  # past this, stop reading (the client sees a reset)
                break
    if size > MAX_FORM:  # the rest was read and dropped, so the client gets the answer
        raise InvalidJobError("request body too large")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json":
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            raise InvalidJobError("the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise InvalidJobError("the body must be a JSON object")
        return {
            str(k): [str(x) for x in v] if isinstance(v, list) else [str(v)]
            for k, v in data.items()
            if v is not None
        }
    return parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)


def _list_args(request: Request) -> tuple[str | None, str | None, int, int]:
    params = request.query_params
    status = params.get("status") or None
    if status is not None:
        _check_statuses([status], terminal_only=False)
    job_type = params.get("type") or None
    limit = _int(params.get("limit"), 50, "limit")
    offset = _int(params.get("offset"), 0, "offset")
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidJobError(f"limit must be between 1 and {MAX_LIMIT}")
    return status, job_type, limit, offset


def _int(value: str | None, default: int, what: str) -> int:
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise InvalidJobError(f"{what} must be an integer, not {value!r}") from None
    if number < 0:
        raise InvalidJobError(f"{what} must be >= 0")
    return number


def _check_statuses(values: list[str], *, terminal_only: bool = True) -> list[str]:
    allowed = ("complete", "failed", "cancelled") if terminal_only else STATUSES
    for value in values:
        if value not in allowed:
            raise InvalidJobError(f"unknown status {value!r}: use one of {', '.join(allowed)}")
    return values


def _list_notice(request: Request) -> str | None:
    params = request.query_params
    for key, text in (("retried", "Retried {} failed job(s)."), ("purged", "Purged {} job(s).")):
        value = params.get(key)
        if value is not None and value.isdigit():
            return text.format(int(value))
    return None
