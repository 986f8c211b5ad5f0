"""The read-only web view: a Starlette app over any store, pages and ``/api/...`` JSON.

Safety is built in rather than left to the deployment: no route writes; every stored
string is escaped by Jinja2's autoescaping (stored content is untrusted: a message holding
``<script>`` renders as text); a malformed id is a 400 page, a missing one a 404 page, and
any other failure a 500 page without a traceback. When a token is set (required for any
host but loopback, see ``serve``), every request must carry it: ``Authorization: Bearer``,
``?token=`` (which also sets a cookie so links keep working), or that cookie.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from qmcp_agents.domain import ExecutionStatus, NotFound
from qmcp_agents.domain.ports import Store

from . import reads

HERE = Path(__file__).parent
COOKIE = "qmcp_token"
log = logging.getLogger("qmcp_agents.web")

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html", "svg"], default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def _json_text(value: Any) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


templates.filters["pretty"] = _json_text


class TokenCheck(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str | None) -> None:
        super().__init__(app)
        self.token = token

    async def dispatch(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if self.token is None:
            return await call_next(request)
        header = request.headers.get("authorization", "")
        offered = [
            header[7:] if header.lower().startswith("bearer ") else "",
            request.query_params.get("token", ""),
            request.cookies.get(COOKIE, ""),
        ]
        if not any(o and hmac.compare_digest(o.encode(), self.token.encode()) for o in offered):
            return _error(
                request, 401, "a valid token is required (Authorization: Bearer, ?token= or the cookie)"
            )
        response = await call_next(request)
        if request.query_params.get("token"):
            response.set_cookie(COOKIE, self.token, httponly=True, samesite="strict")
        return response


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/healthz"


def _error(request: Request, status: int, message: str) -> Response:
    if _is_api(request):
        return JSONResponse({"error": message, "status": status}, status_code=status)
    html = templates.get_template("error.html").render(status=status, message=message, title=f"{status}")
    return HTMLResponse(html, status_code=status)


def create_app(store: Store | None = None, *, url: str | None = None, token: str | None = None) -> Starlette:
    """The web view over ``store`` (already open), or over the store at ``url`` (opened for the
    app's lifetime)."""
    if (store is None) == (url is None):
        raise ValueError("create_app takes a store or a url, not both")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if store is not None:  # given open; also set below, for servers that skip lifespan
            yield
            return
        from qmcp_agents.adapters import open_store

        assert url is not None
        async with open_store(url) as opened:
            app.state.store = opened
            yield

    def the_store(request: Request) -> Store:
        found: Store = request.app.state.store
        return found

    def page(name: str, **values: Any) -> HTMLResponse:
        return HTMLResponse(templates.get_template(name).render(**values))

    async def executions(request: Request) -> Response:
        q = request.query_params
        data = await reads.executions_page(
            the_store(request),
            status=q.get("status"),
            topology=q.get("topology"),
            since=q.get("since"),
            after=q.get("after"),
        )
        if _is_api(request):
            return JSONResponse({"items": data.items, "next_cursor": data.next_cursor})
        return page(
            "executions.html", title="Executions", data=data, statuses=[s.value for s in ExecutionStatus]
        )

    async def execution(request: Request) -> Response:
        execution_id = reads.parse_uuid(request.path_params["execution_id"])
        view = await reads.execution_view(the_store(request), execution_id, request.query_params.get("after"))
        if _is_api(request):
            return JSONResponse(view.__dict__)
        short = str(execution_id)[:8]
        return page(
            "execution.html", title=f"Execution {short}", view=view, after=request.query_params.get("after")
        )

    async def chart(request: Request) -> Response:
        execution_id = reads.parse_uuid(request.path_params["execution_id"])
        data = await reads.chart(the_store(request), execution_id)
        if _is_api(request):
            return JSONResponse(data)
        svg = templates.get_template("chart.svg").render(c=data)
        return Response(svg, media_type="image/svg+xml")

    async def messages(request: Request) -> Response:
        execution_id = reads.parse_uuid(request.path_params["execution_id"])
        raw = request.query_params.get("since", "0")
        if not raw.isascii() or not raw.isdigit():
            raise reads.BadRequest(f"since={raw!r} must be a sequence number")
        return JSONResponse(await reads.messages_since(the_store(request), execution_id, int(raw)))

    async def topologies(request: Request) -> Response:
        data = await reads.topologies(the_store(request))
        if _is_api(request):
            return JSONResponse(data)
        return page("topologies.html", title="Topologies", topologies=data)

    async def agent_types(request: Request) -> Response:
        data = await reads.agent_types(the_store(request))
        if _is_api(request):
            return JSONResponse(data)
        return page("agent_types.html", title="Agent types", agent_types=data)

    async def healthz(request: Request) -> Response:
        await the_store(request).executions.count()
        return JSONResponse({"status": "ok"})

    async def bad_request(request: Request, error: Exception) -> Response:
        return _error(request, 400, str(error))

    async def not_found(request: Request, error: Exception) -> Response:
        return _error(request, 404, str(error) if isinstance(error, NotFound) else "no such page")

    async def http_error(request: Request, error: Exception) -> Response:
        status = error.status_code if isinstance(error, HTTPException) else 500
        return _error(request, status, "no such page" if status == 404 else str(getattr(error, "detail", "")))

    async def server_error(request: Request, error: Exception) -> Response:
        log.exception("web view failed on %s", request.url.path)
        return _error(request, 500, f"the view failed ({type(error).__name__}); the log has the details")

    routes = [
        Route("/", executions),
        Route("/executions/{execution_id}", execution),
        Route("/executions/{execution_id}/chart.svg", chart),
        Route("/topologies", topologies),
        Route("/agent-types", agent_types),
        Route("/healthz", healthz),
        Route("/api/executions", executions),
        Route("/api/executions/{execution_id}", execution),
        Route("/api/executions/{execution_id}/messages", messages),
        Route("/api/executions/{execution_id}/chart", chart),
        Route("/api/topologies", topologies),
        Route("/api/agent-types", agent_types),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        middleware=[Middleware(TokenCheck, token=token)],
        exception_handlers={
            reads.BadRequest: bad_request,
            ValidationError: bad_request,
            NotFound: not_found,
            HTTPException: http_error,
            Exception: server_error,
        },
    )
    if store is not None:
        app.state.store = store
    return app


__all__ = ["create_app"]
