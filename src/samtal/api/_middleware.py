"""What every request goes through: the headers it earned on the way (its rate limit's) put on
whatever answer it gets, and one log line when it is done; and HEAD wherever GET is served."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from samtal import metrics

log = logging.getLogger("samtal.access")
#: The methods a metric or log line names as they are; any other is "other": a label takes
#: its value from a closed set, never from the wire (a client could make up thousands).
METHODS = frozenset(("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"))


class RequestLog:
    """Pure ASGI (a streamed answer passes through untouched): on the answer's start, adds the
    headers in `request.state.headers` that it does not carry yet; when the answer is sent,
    logs method, route, status, duration and organisation (never a token) at INFO."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        began = time.perf_counter()
        state: dict[str, Any] = scope.setdefault("state", {})
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                earned = state.get("headers")
                if earned:
                    present = {name.lower() for name, _ in message.get("headers", [])}
                    extra = [
                        (name.lower().encode(), value.encode())
                        for name, value in earned.items()
                        if name.lower().encode() not in present
                    ]
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            # The template as the API describes it (`/cdr/calls/{id}`, not its `{id:path}`).
            path = getattr(route, "path_format", None) or "(no route)"
            method = scope["method"] if scope["method"] in METHODS else "other"
            seconds = time.perf_counter() - began
            millis = seconds * 1000
            metrics.REQUESTS.labels(method, path, str(status)).inc()
            metrics.REQUEST_SECONDS.labels(path).observe(seconds)
            log.info(
                "%s %s %d %.1f ms%s",
                method,
                path,
                status,
                millis,
                f" org={state['org']}" if "org" in state else "",
                extra={
                    "method": method,
                    "route": path,
                    "status": status,
                    "duration_ms": round(millis, 2),
                    "org": state.get("org"),
                },
            )


class HeadAsGet:
    """HEAD wherever GET is served (RFC 9110: a server must support both): the answer a GET
    would get, status and headers, without its body. A monitor's probe or `curl -I` sees
    what the GET would, a 401 or a 429 included; the request is authorised, limited and
    worked out as that GET is (a HEAD of a long period costs its GET). A path with no GET
    keeps its 405, which names HEAD and what the path takes."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        #: The application's routes (filled in after this is made, as routers are included).
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        as_get = {**scope, "method": "GET"}
        if not any(route.matches(as_get)[0] is Match.FULL for route in self.routes):
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        try:
            await self.app(as_get, receive, headers_only)
        finally:
            if "route" in as_get:  # for the request's log line and metrics (RequestLog)
                scope["route"] = as_get["route"]
