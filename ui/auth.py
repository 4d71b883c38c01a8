"""Who is using the app, checked on every rerun; fails closed.

The mode is fixed when ``realcal app`` starts (``REALCAL_AUTH_MODE``) and only ever moves from
single-user to accounts: single-user mode (no accounts exist) makes whoever reaches the app the
local admin, for loopback clients only; in accounts mode the user is the one whose server-side
session the httpOnly cookie names (set by the login page, ``ui/auth_routes.py``), and the name and
role come from the database on every rerun, so logout, a password change or disabling the account
takes effect at once, wherever the cookie was copied to. With accounts but none active, nobody
gets in.
"""
from __future__ import annotations

import os

import streamlit as st

from engine import auth
from engine.errors import RealcalError
from ui.auth_routes import login_link

USER_KEY = "realcal_user"
_ACCOUNTS_SEEN: set[str] = set()       # workspaces this process has seen in accounts mode


def request_cookie(name: str) -> str | None:
    """A cookie the browser sent when this session connected (httpOnly ones included)."""
    value = st.context.cookies.get(name)
    return value if isinstance(value, str) else None


def client_address() -> str | None:
    """The client's address; None for a loopback client. Streamlit's test harness has no client
    and answers with a stand-in object, read as loopback."""
    value = st.context.ip_address
    return value if isinstance(value, str) else None


def mode(ws) -> str:
    """``single`` or ``accounts``: fixed at start, never falling back to single-user mode."""
    root = str(ws.root)
    fixed = "accounts" if root in _ACCOUNTS_SEEN else os.environ.get(auth.MODE_ENV)
    try:
        with ws.connect() as db:
            m = auth.current_mode(db, fixed)
    except RealcalError as exc:
        st.error(str(exc))
        st.stop()
    if m == "accounts":
        _ACCOUNTS_SEEN.add(root)
    return m


def _page_path() -> str | None:
    """The path of the page the browser asked for (``/results``), to come back to after logging in."""
    from urllib.parse import urlparse

    try:
        url = st.context.url
    except Exception:  # noqa: BLE001 - no browser context (tests, bare mode): the start page
        return None
    return urlparse(url).path if isinstance(url, str) else None


def _local_admin() -> dict | None:
    if client_address() is not None:
        return None
    return {"name": "local", "role": "admin", "single_user": True}


def _refuse_remote_single_user() -> None:
    st.error("This app runs in single-user mode, which serves this computer only (loopback). "
             "To let others in, add accounts (`realcal user add NAME --role admin`) and restart the app.")


def _secret(ws) -> bytes | None:
    try:
        return auth.secret_key(ws.root)
    except RealcalError as exc:
        st.error(f"Login is unavailable: {exc}")
        return None


def _on_logout(ws, session_id: int) -> None:
    with ws.connect() as db:
        auth.logout(db, session_id)
    st.session_state.pop(USER_KEY, None)


def current_user(ws) -> dict | None:
    """For ``app.py``, on every rerun: the signed-in user ({name, role, single_user, session_id}),
    or None after showing why there is none (not logged in, no active account)."""
    from store import review as store_review

    if mode(ws) == "single":
        user = _local_admin()
        if user is None:
            st.session_state.pop(USER_KEY, None)
            _refuse_remote_single_user()
            return None
        st.session_state[USER_KEY] = user
        return user
    secret = _secret(ws)
    cookie = request_cookie(auth.cookie_name(ws.root))
    with ws.connect() as db:
        found = auth.session_user(db, secret, cookie) if secret is not None and cookie else None
        active = store_review.active_user_count(db)
    if found is None:
        st.session_state.pop(USER_KEY, None)
        st.title("realcal")
        if active == 0:
            st.error("No account is active, so nobody can log in. An admin enables one with "
                     "`realcal user enable NAME`.")
        elif secret is not None:
            st.info("Please log in.")
            st.markdown(f'<a href="{login_link(_page_path())}" target="_self">Log in</a>', unsafe_allow_html=True)
        return None
    user = {**found, "single_user": False}
    st.session_state[USER_KEY] = user
    with st.sidebar:
        st.caption(f"Signed in as **{user['name']}** ({user['role']})")
        st.button("Log out", on_click=_on_logout, args=(ws, user["session_id"]))
    return user


def _still_valid(ws, user: dict | None) -> dict | None:
    """The session user, re-read from the database (current role), or None if it no longer holds."""
    from store import review as store_review

    if not user or user.get("single_user"):
        return None
    with ws.connect() as db:
        if user.get("session_id") is not None:
            live = auth.session_alive(db, int(user["session_id"]))
            return {**live, "single_user": False} if live else None
        row = store_review.user(db, user.get("name", ""))
    if row is None or row["disabled"]:
        return None
    return {"name": row["name"], "role": row["role"], "single_user": False}


def page_user(ws, admin_only: bool = True) -> dict:
    """For a page: the user ``app.py`` signed in, checked again; stops the page if there is none or
    the role is wrong. Never falls back to single-user mode while accounts exist."""
    if mode(ws) == "single":
        user = _local_admin()
        if user is None:
            _refuse_remote_single_user()
            st.stop()
    else:
        user = _still_valid(ws, st.session_state.get(USER_KEY))
        if user is None:
            st.session_state.pop(USER_KEY, None)
            st.error("Please log in.")
            st.stop()
    assert user is not None
    if admin_only and user["role"] != "admin":
        st.error("This page is for admins.")
        st.stop()
    return user
