"""The judging page and its JSON API: a Starlette app over a `Study`, served by uvicorn.

    app = make_app(Study("judge.sqlite"))
    serve(study, host="127.0.0.1", port=8765)

Routes (docs/judge.md has the full contract):

    GET  /                 the page (inline CSS and JS; no external asset)
    GET  /api/study        what the study asks: tasks, prompt subject, goal
    GET  /api/pair         the rater's next pair (pairwise) or image (realfake); ?task=pairwise|realfake
    POST /api/judgement    {"pair": id, "choice": "left"|"right"|"real"|"generated"}
    GET  /img/{id}         a stored image by its opaque id (PNG)

Each rater is a session: an opaque random token in an HttpOnly, SameSite=Strict cookie, given on
the first visit. Handlers are plain functions (Starlette runs them in its thread pool); the study
keeps one SQLite connection per thread and commits every answer in its own transaction.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import sys
from typing import Optional

from ...errors import ConfigError
from .page import PAGE
from .study import Rejected, Study

COOKIE = "genlab_judge"
MAX_BODY = 4096  # a judgement is a few dozen bytes
HEADERS = {"Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                                      "script-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; "
                                      "form-action 'none'; frame-ancestors 'none'",
           "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def require_web() -> None:
    """Raise a one-line ConfigError naming the extra when Starlette or uvicorn is missing."""
    missing = []
    for mod in ("starlette", "uvicorn"):
        try:
            __import__(mod)
        except ImportError:
            missing.append(mod)
    if missing:
        raise ConfigError(f"genlab judge serves its page with {' and '.join(missing)}, not installed: "
                          "pip install 'genlab[web]'")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def make_app(study: Study):
    """The Starlette application serving `study`."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=HEADERS)

    def session(request: Request) -> Optional[str]:
        rater = request.cookies.get(COOKIE)
        return rater if study.has_rater(rater) else None

    def with_cookie(resp: Response, rater: str, new: bool) -> Response:
        if new:
            resp.set_cookie(COOKIE, rater, max_age=60 * 60 * 24 * 30, httponly=True, samesite="strict", path="/")
        return resp

    def page(request: Request):
        rater = session(request)
        new = rater is None
        if new:
            rater = study.new_rater(request.headers.get("user-agent", ""))
        return with_cookie(HTMLResponse(PAGE, headers=HEADERS), rater, new)

    def info(request: Request):
        m = study.meta
        return JSONResponse({"tasks": study.tasks, "subject": m["subject"], "goal": study.goal,
                             "data": m["data"]}, headers=HEADERS)

    def pair(request: Request):
        rater = session(request)
        new = rater is None
        if new:
            rater = study.new_rater(request.headers.get("user-agent", ""))
        try:
            item = study.next_item(rater, request.query_params.get("task"))
        except Rejected as e:
            return with_cookie(error(e.status, str(e)), rater, new)
        if "images" in item:
            item["images"] = [f"/img/{i}" for i in item["images"]]
        return with_cookie(JSONResponse(item, headers=HEADERS), rater, new)

    async def judgement(request: Request):
        from starlette.concurrency import run_in_threadpool

        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return error(415, "send the judgement as application/json")
        body = await request.body()
        if len(body) > MAX_BODY:
            return error(413, "request body too large")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return error(400, "the body is not valid JSON")
        if not isinstance(data, dict) or set(data) - {"pair", "choice"} or not {"pair", "choice"} <= set(data):
            return error(422, "expected {\"pair\": \"<id from /api/pair>\", \"choice\": \"...\"}")
        rater = await run_in_threadpool(session, request)
        if rater is None:
            return error(401, "no rater session: open the study page first (it sets a cookie)")
        try:
            result = await run_in_threadpool(study.record, rater, data["pair"], data["choice"])
        except Rejected as e:
            return error(e.status, str(e))
        return JSONResponse(result, headers=HEADERS)

    def image(request: Request):
        png = study.image(request.path_params["item"])
        if png is None:
            return error(404, "no such image")
        return Response(png, media_type="image/png",
                        headers={**HEADERS, "Cache-Control": "private, max-age=86400, immutable"})

    routes = [Route("/", page), Route("/api/study", info), Route("/api/pair", pair),
              Route("/api/judgement", judgement, methods=["POST"]), Route("/img/{item}", image)]
    app = Starlette(routes=routes)
    app.state.study = study
    return app


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on host:port (port 0: any free port), so the URL is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def make_server(study: Study, log_level: str = "warning"):
    """A uvicorn Server for the study's app (call `.run(sockets=[bind(host, port)])`)."""
    import uvicorn

    config = uvicorn.Config(make_app(study), log_level=log_level, access_log=False, lifespan="off",
                            timeout_keep_alive=30, backlog=2048)
    return uvicorn.Server(config)


def serve(study: Study, host: str = "127.0.0.1", port: int = 8765, announce=print) -> None:
    """Serve the study until interrupted (Ctrl-C)."""
    require_web()
    sock = bind(host, port)
    announce(url_of(sock))
    server = make_server(study)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        sys.stdout.flush()
