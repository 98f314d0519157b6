"""What every request goes through: the headers it earned on the way (its rate limit's) put on
whatever answer it gets, and one log line when it is done."""

from __future__ import annotations

import logging
import time
from typing import Any

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
