"""Login and roles for the app.

No users in the workspace: single-user mode (everything, loopback only). With users: a login
form (streamlit-authenticator: bcrypt hashes from the workspace, a signed cookie so a login
survives a refresh) and logout. The role always comes from the database, so disabling a user or
changing a role takes effect on the next rerun, cookie or not.
"""
from __future__ import annotations

import secrets

import streamlit as st

USER_KEY = "realcal_user"


def _cookie_key(db) -> str:
    from store import settings

    key = settings.get(db, "auth.cookie_key")
    if not key:
        key = secrets.token_hex(32)
        settings.set_value(db, "auth.cookie_key", key)
        db.conn.commit()
    return key


def current_user(ws) -> dict | None:
    """The logged-in user ({name, role, single_user}), rendering the login form when needed."""
    from store import review as store_review

    with ws.connect() as db:
        users = store_review.users(db, include_disabled=False)
        if not users:
            user = {"name": "local", "role": "admin", "single_user": True}
            st.session_state[USER_KEY] = user
            return user
        cookie_key = _cookie_key(db)
    import streamlit_authenticator as stauth

    creds = {"usernames": {u["name"]: {"name": u["name"], "password": u["password_hash"],
                                       "email": f"{u['name']}@realcal.local", "roles": [u["role"]]}
                           for u in users}}
    auth = stauth.Authenticate(creds, cookie_name=f"realcal_{abs(hash(str(ws.root))) % 10**8}",
                               cookie_key=cookie_key, cookie_expiry_days=7, auto_hash=False)
    try:
        auth.login(location="main", fields={"Form name": "realcal: log in"})
    except Exception as exc:  # a malformed cookie or form state: show it, never a blank page
        st.error(f"Login failed: {exc}")
    name = st.session_state.get("username") if st.session_state.get("authentication_status") else None
    row = next((u for u in users if u["name"] == name), None)
    if row is None:
        if st.session_state.get("authentication_status") is False:
            st.error("Wrong user name or password.")
        st.session_state.pop(USER_KEY, None)
        return None
    user = {"name": row["name"], "role": row["role"], "single_user": False}
    st.session_state[USER_KEY] = user
    with st.sidebar:
        st.caption(f"Signed in as **{row['name']}** ({row['role']})")
        auth.logout(location="sidebar")
    return user


def page_user(ws, admin_only: bool = True) -> dict:
    """For a page: the user set by app.py; stops the page if there is none or the role is wrong."""
    from store import review as store_review

    user = st.session_state.get(USER_KEY)
    if user is None:
        with ws.connect() as db:
            if store_review.active_user_count(db) == 0:
                user = {"name": "local", "role": "admin", "single_user": True}
    if user is None:
        st.error("Please log in.")
        st.stop()
    if admin_only and user["role"] != "admin":
        st.error("This page is for admins.")
        st.stop()
    return user
