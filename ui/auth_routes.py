"""The login page, an HTTP route served beside the Streamlit app (``app_server.py``).

Streamlit scripts cannot set an httpOnly cookie, so the login form posts here: the credentials are
checked (throttled, :mod:`engine.auth`), a server-side session is opened and its cookie is set
``HttpOnly``, ``SameSite=Lax``, and ``Secure`` when the request came over TLS (``realcal app
--ssl-certfile``, or a TLS proxy on this host that sends ``X-Forwarded-Proto``). The app reads the
cookie from ``st.context.cookies`` and checks the session on every rerun. Logging out happens in the
app (the session row is revoked, so the cookie is dead wherever it was copied to).
"""
from __future__ import annotations

import html
import os
import re
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from engine import auth
from engine.errors import RealcalError
from engine.workspace import Workspace

LOGIN_PATH = "/auth/login"
HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",    # "no-referrer" would make browsers send Origin: null
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'",
}
PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>realcal: log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body {{ font-family: sans-serif; background: #f6f6f9; display: flex; justify-content: center; margin-top: 12vh; }}
form {{ background: white; padding: 2em 2.5em; border-radius: 8px; box-shadow: 0 1px 4px #0002; width: 20em; }}
label {{ display: block; margin-top: 1em; font-size: 0.9em; }}
input {{ width: 100%; box-sizing: border-box; padding: 0.5em; margin-top: 0.3em; font-size: 1em; }}
button {{ margin-top: 1.5em; padding: 0.6em 1.2em; font-size: 1em; }}
.msg {{ color: #a00; margin-top: 1em; }}
</style></head>
<body><form method="post" action="{action}">
<h2>realcal: log in</h2>
<input type="hidden" name="next" value="{next}">
<label for="username">Username</label><input id="username" name="username" autocomplete="username"
 value="{name}" required autofocus>
<label for="password">Password</label><input id="password" name="password" type="password"
 autocomplete="current-password" required>
{message}
<button type="submit">Log in</button>
</form></body></html>
"""


_NEXT = re.compile(r"/(?:[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*)?")


def safe_next(value: object) -> str:
    """Where to go after logging in: an app page path (``/results``), never another site, a
    scheme-relative URL (``//evil``), a query or this login route; anything else is ``/``."""
    text = value if isinstance(value, str) else ""
    if not _NEXT.fullmatch(text) or text.startswith(LOGIN_PATH) or len(text) > 200:
        return "/"
    return text


def login_link(path: str | None) -> str:
    """The login URL that comes back to ``path`` (the page the visitor asked for)."""
    nxt = safe_next(path or "/")
    return LOGIN_PATH if nxt == "/" else f"{LOGIN_PATH}?next={quote(nxt)}"


def _page(message: str = "", name: str = "", status: int = 200, headers: dict | None = None,
          next_path: str = "/") -> HTMLResponse:
    msg = f'<p class="msg" role="alert">{html.escape(message)}</p>' if message else ""
    return HTMLResponse(PAGE.format(action=LOGIN_PATH, name=html.escape(name), message=msg,
                                    next=html.escape(safe_next(next_path))),
                        status_code=status, headers={**HEADERS, **(headers or {})})


def _workspace() -> Workspace:
    return Workspace.open(os.environ.get("REALCAL_WORKSPACE", ""))


def _same_origin(request: Request) -> bool:
    """A form post from another site (login CSRF) carries its own Origin; a browser that sends no
    Origin is let through (the credentials still have to be right)."""
    origin = request.headers.get("origin")
    if not origin:
        return True
    return origin == f"{request.url.scheme}://{request.headers.get('host', '')}"


def _single_user_mode(ws: Workspace) -> bool:
    with ws.connect() as db:
        return auth.current_mode(db, os.environ.get(auth.MODE_ENV)) == "single"


async def login(request: Request) -> Response:
    try:
        ws = _workspace()
        if await run_in_threadpool(_single_user_mode, ws):
            return RedirectResponse("/", status_code=303, headers=HEADERS)
    except RealcalError as exc:
        return _page(str(exc), status=500)
    if request.method == "GET":
        return _page(next_path=safe_next(request.query_params.get("next")))
    if not _same_origin(request):
        return _page("This form can only be sent from this app's own page.", status=403)
    form = await request.form()
    name, password = str(form.get("username") or ""), str(form.get("password") or "")
    nxt = safe_next(form.get("next"))
    address = request.client.host if request.client else None

    def check() -> tuple[str, dict]:
        with ws.connect() as db:
            return auth.login(db, auth.secret_key(ws.root), name, password, address=address,
                              user_agent=request.headers.get("user-agent"))
    try:
        cookie, _user = await run_in_threadpool(check)
    except auth.LoginRefused as exc:
        if exc.retry_after is not None:
            return _page(str(exc), name, status=429, headers={"Retry-After": str(int(exc.retry_after))},
                         next_path=nxt)
        return _page(str(exc), name, status=401, next_path=nxt)
    except RealcalError as exc:
        return _page(str(exc), name, status=500, next_path=nxt)
    response = RedirectResponse(nxt, status_code=303, headers=HEADERS)
    response.set_cookie(auth.cookie_name(ws.root), cookie, max_age=auth.SESSION_TTL_S, path="/",
                        httponly=True, secure=request.url.scheme == "https", samesite="lax")
    return response


def routes() -> list[Route]:
    return [Route(LOGIN_PATH, login, methods=["GET", "POST"])]
