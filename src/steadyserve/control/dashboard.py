"""The dashboard: a page on the control API at /ui, its files, and its login.

Logging in: with an API token (viewer, deployer or admin) typed into /ui/login, or with
Jupyter's convention of a login URL, ``/ui?token=...``, which starts a session and redirects
to /ui so the token leaves the address bar. ``steady dashboard`` prints such a URL with a
one-time code it minted through the control API (``POST /v1/ui/logins``), never a token.
The session cookie then authorises reading the control API (the page's data); nothing else.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from ..auth import Action, TokenRecord, check
from .sessions import LOGIN_PREFIX, Sessions
from .statedb import StateDB

COOKIE = "steady_session"
LOGINS_PATH = "/v1/ui/logins"
STATIC_FILES = {  # what /ui/static serves: name -> (package file, content type)
    "dashboard.js": ("static/dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": ("static/dashboard.css", "text/css; charset=utf-8"),
    "uPlot.iife.min.js": ("static/vendor/uplot/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "uPlot.min.css": ("static/vendor/uplot/uPlot.min.css", "text/css; charset=utf-8"),
}
PAGE_HEADERS = {
    "content-security-policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
                               " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}


def _file(name: str) -> bytes:
    return resources.files("steadyserve").joinpath(name).read_bytes()


def _login_page(message: str = "", status: int = 200) -> HTMLResponse:
    from html import escape

    page = _file("static/login.html").decode().replace("{{message}}", escape(message))
    return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)


def session_of(request: Request, sessions: Sessions) -> Any:
    return sessions.get(request.cookies.get(COOKIE))


def dashboard_router(db: StateDB, sessions: Sessions, secure_cookie: bool) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    def _start_session(name: str, role: str, token_id: str | None) -> RedirectResponse:
        redirect = RedirectResponse("/ui", status_code=303, headers=PAGE_HEADERS)
        redirect.set_cookie(COOKIE, sessions.start(name, role, token_id), max_age=int(12 * 3600), httponly=True,
                            samesite="strict", secure=secure_cookie, path="/")
        return redirect

    def _who(secret: str) -> tuple[str, str, str | None] | None:
        """(name, role, token id) of a valid API token allowed to read, or of an unused login code."""
        if secret.startswith(LOGIN_PREFIX):
            found = sessions.redeem(secret)
            return (found.name, found.role, found.token_id) if found is not None else None
        tokens = {t["id"]: TokenRecord(t["id"], t["name"], t["role"], t["digest"]) for t in db.tokens()}
        verdict = check(f"Bearer {secret}", tokens, Action.READ)
        if verdict.status != 200 or verdict.token is None:
            return None
        return verdict.token.name, verdict.token.role, verdict.token.id

    @router.get("/ui")
    async def page(request: Request, token: str | None = None) -> Response:
        if token is not None:  # Jupyter's login URL: start a session, then drop the token from the address
            who = _who(token)
            if who is None:
                return _login_page("That login link is not valid (used, expired, or not a token that may read)."
                                   " Run `steady dashboard` for a new one.", 401)
            return _start_session(*who)
        if session_of(request, sessions) is None:
            return RedirectResponse("/ui/login", status_code=303, headers=PAGE_HEADERS)
        return HTMLResponse(_file("static/dashboard.html"), headers=PAGE_HEADERS)

    @router.get("/ui/login")
    async def login_form() -> Response:
        return _login_page()

    @router.post("/ui/login")
    async def login(token: str = Form(default="", max_length=512)) -> Response:
        who = _who(token.strip())
        if who is None:
            return _login_page("Not a token that may read the control API (viewer, deployer or admin).", 401)
        return _start_session(*who)

    @router.post("/ui/logout")
    async def logout(request: Request) -> Response:
        sessions.end(request.cookies.get(COOKIE))
        response = RedirectResponse("/ui/login", status_code=303, headers=PAGE_HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    @router.get("/ui/static/{name}")
    async def static(name: str) -> Response:
        found = STATIC_FILES.get(name)
        if found is None:
            return JSONResponse({"error": f"no file {name!r}"}, status_code=404)
        return Response(_file(found[0]), media_type=found[1],
                        headers={"x-content-type-options": "nosniff", "cache-control": "max-age=300"})

    return router


def logins_router(sessions: Sessions) -> APIRouter:
    """``POST /v1/ui/logins``: a one-time dashboard login for the caller (the guard authenticated it)."""
    router = APIRouter()

    @router.post(LOGINS_PATH, status_code=201)
    async def mint(request: Request) -> dict[str, Any]:
        name = getattr(request.state, "actor", "-")
        role = getattr(request.state, "role", "viewer")
        token_id = getattr(request.state, "token_id", None)
        return {"code": sessions.mint_login(name, role, token_id), "path": "/ui?token=", "expires_in_s": 120}

    return router
