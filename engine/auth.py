"""Access to the app: a mode fixed at start, revocable server-side sessions, throttled logins.

**Mode.** ``single`` (the workspace has no accounts: whoever reaches the app is the local admin,
and the app serves loopback only) or ``accounts``. ``realcal app`` fixes the mode when it starts
(:data:`MODE_ENV`), and the app never falls back to single-user mode while it runs: an account
that exists, disabled or not, keeps the app in accounts mode, and with accounts but none active
nobody gets in.

**Sessions.** A login creates a row in ``auth_sessions`` and sets an httpOnly cookie holding a
random token and its HMAC under the signing secret. The database keeps only the token's SHA-256,
so reading the database gives no usable cookie, and without the secret no cookie can be forged.
Every request checks the row: logout, a password change, disabling the account and ``realcal user
logout`` revoke it, so a copied cookie stops working at once. Sessions end after
:data:`SESSION_TTL_S`.

**Secret.** ``REALCAL_SECRET_KEY`` (at least 32 characters) or, by default, the file
``realcal.secret`` beside ``realcal.db``, created with mode 0600 on first use; a secret file that
others can read is refused. Replacing the secret ends every session.

**Throttling.** Failed logins are counted per user name (any case) and per client address since
that key's last success, over :data:`THROTTLE_WINDOW_S`; past :data:`MAX_USER_FAILURES` (user) or
:data:`MAX_ADDRESS_FAILURES` (address) further attempts are refused before any password check
until the oldest failure leaves the window.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from engine import review
from engine.errors import RealcalError
from store import review as store_review
from store import sessions as store_sessions
from store.db import write_transaction

MODES = ("single", "accounts")
MODE_ENV = "REALCAL_AUTH_MODE"
SECRET_ENV = "REALCAL_SECRET_KEY"
SECRET_FILE = "realcal.secret"
MIN_SECRET_CHARS = 32
SESSION_TTL_S = 7 * 86400
THROTTLE_WINDOW_S = 15 * 60
MAX_USER_FAILURES = 5
MAX_ADDRESS_FAILURES = 20
COOKIE_PREFIX = "realcal_session_"


class LoginRefused(RealcalError):
    """A login that did not succeed; ``retry_after`` (seconds) when it was throttled."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


# ----------------------------------------------------------------------------- mode

def start_mode(db) -> str:
    """The mode a server starting now gets: accounts as soon as any account exists, disabled or not."""
    return "accounts" if store_review.user_count(db) else "single"


def current_mode(db, fixed: str | None = None) -> str:
    """The mode for a request: the one fixed at start (``fixed``, from :data:`MODE_ENV`), moved to
    accounts (never away from it) if accounts have appeared since."""
    if fixed not in (None, "", *MODES):
        raise RealcalError(f"{MODE_ENV} must be one of {', '.join(MODES)}, not {fixed!r}")
    if fixed == "accounts" or store_review.user_count(db):
        return "accounts"
    return "single"


# ----------------------------------------------------------------------------- secret and cookie

def cookie_name(root: str | os.PathLike) -> str:
    """The session cookie's name: stable across restarts, distinct per workspace (cookies do not
    separate ports, so two apps on one host must not share a name)."""
    return COOKIE_PREFIX + hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]


def secret_path(root: str | os.PathLike) -> Path:
    return Path(root) / SECRET_FILE


def secret_key(root: str | os.PathLike) -> bytes:
    """The signing secret: :data:`SECRET_ENV`, else ``realcal.secret`` beside the database (made,
    mode 0600, on first use). Refuses a secret file readable by others or too short."""
    env = os.environ.get(SECRET_ENV)
    if env:
        if len(env) < MIN_SECRET_CHARS:
            raise RealcalError(f"{SECRET_ENV} must be at least {MIN_SECRET_CHARS} characters "
                               f"(e.g. python -c 'import secrets; print(secrets.token_hex(32))')")
        return env.encode()
    path = secret_path(root)
    if not path.exists():
        _create_secret(path)
    try:
        mode = path.stat().st_mode
        if os.name == "posix" and mode & 0o077:
            raise RealcalError(f"{path} can be read by other users (mode {oct(mode & 0o777)}); "
                               f"run `chmod 600 {path}`")
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RealcalError(f"cannot read the signing secret {path}: {exc}") from None
    if len(key) < MIN_SECRET_CHARS:
        raise RealcalError(f"{path} holds no usable secret (under {MIN_SECRET_CHARS} characters); delete it "
                           f"and a new one is made (every session ends)")
    return key.encode()


def _create_secret(path: Path) -> None:
    """Write a new secret atomically: a 0600 temporary file linked into place, so a concurrent
    reader never sees a half-written file and two creators agree on one secret."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".realcal.secret.")
    except OSError as exc:
        raise RealcalError(f"cannot create the signing secret in {path.parent}: {exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    except OSError as exc:
        raise RealcalError(f"cannot create the signing secret {path}: {exc}") from None
    finally:
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _sign(secret: bytes, token: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(secret, token.encode(), hashlib.sha256).digest()).decode().rstrip("=")


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token(secret: bytes, cookie: str | None) -> str | None:
    if not cookie or cookie.count(".") != 1 or len(cookie) > 200:
        return None
    token, sig = cookie.split(".")
    return token if token and hmac.compare_digest(sig, _sign(secret, token)) else None


# ----------------------------------------------------------------------------- login, sessions

_DUMMY_HASH: list[str] = []


def _spend_a_check(password: str) -> None:
    """Check against a throwaway hash, so an unknown name takes as long as a wrong password."""
    if not _DUMMY_HASH:
        _DUMMY_HASH.append(review.hash_password(secrets.token_hex(16)))
    review.check_password(password, _DUMMY_HASH[0])


def _throttled(db, now: float, *, username: str, address: str) -> LoginRefused | None:
    since = now - THROTTLE_WINDOW_S
    for key, value, limit, what in (("username", username, MAX_USER_FAILURES, f"user {username!r}"),
                                    ("address", address, MAX_ADDRESS_FAILURES, f"address {address}")):
        fails = store_sessions.recent_failures(db, since=since, **{key: value})
        if len(fails) >= limit:
            wait = fails[len(fails) - limit] + THROTTLE_WINDOW_S - now
            return LoginRefused(f"too many failed logins for {what}; try again in "
                                f"{max(1, math.ceil(wait / 60))} min", retry_after=max(wait, 1.0))
    return None


def login(db, secret: bytes, name: str, password: str, *, address: str | None,
          user_agent: str | None = None, now: float | None = None) -> tuple[str, dict[str, Any]]:
    """Check a login and open a session; returns (cookie value, user). Raises :class:`LoginRefused`
    with a message for the login form (the same one for an unknown name, a wrong password and a
    disabled account)."""
    now = time.time() if now is None else now
    name = (name or "").strip()
    address = address or "unknown"
    if not name or not password:
        raise LoginRefused("enter a user name and a password")
    if len(name) > 64 or len(password) > 1024:
        raise LoginRefused("wrong user name or password")
    if store_review.active_user_count(db) == 0:
        raise LoginRefused("no account is active, so nobody can log in; an admin runs "
                           "`realcal user enable NAME`")
    with write_transaction(db):
        # the throttle check and the attempt's record are one transaction, so concurrent guesses
        # cannot all slip in before any failure is counted; it counts as failed until it succeeds
        refused = _throttled(db, now, username=name, address=address)
        if refused is not None:
            raise refused
        attempt = store_sessions.record_attempt(db, username=name, address=address, ok=False, now=now)
    u = store_review.user(db, name)
    if u is None:
        _spend_a_check(password)
    if u is None or u["disabled"] or not review.check_password(password, u["password_hash"]):
        raise LoginRefused("wrong user name or password")
    token = secrets.token_urlsafe(32)
    with write_transaction(db):
        store_sessions.mark_attempt_ok(db, attempt)
        session_id = store_sessions.create(db, token_hash=_token_hash(token), user_id=u["id"], now=now,
                                           expires_at=now + SESSION_TTL_S, address=address, user_agent=user_agent)
        store_sessions.prune(db, now - 30 * 86400)
    return f"{token}.{_sign(secret, token)}", {"name": u["name"], "role": u["role"], "session_id": session_id}


def session_user(db, secret: bytes, cookie: str | None, now: float | None = None) -> dict[str, Any] | None:
    """The user a session cookie stands for, or None: a bad signature, an unknown, revoked or
    expired session, or a disabled account."""
    now = time.time() if now is None else now
    token = _token(secret, cookie)
    if token is None:
        return None
    s = store_sessions.by_token_hash(db, _token_hash(token))
    if s is None or s["revoked_at"] is not None or s["expires_at"] <= now or s["disabled"]:
        return None
    return {"name": s["name"], "role": s["role"], "session_id": s["id"]}


def session_alive(db, session_id: int, now: float | None = None) -> dict[str, Any] | None:
    """The session's user (current name and role) while the session is live, else None."""
    now = time.time() if now is None else now
    s = store_sessions.get(db, session_id)
    if s is None or s["revoked_at"] is not None or s["expires_at"] <= now or s["disabled"]:
        return None
    return {"name": s["name"], "role": s["role"], "session_id": s["id"]}


def logout(db, session_id: int) -> bool:
    """End one session (its cookie stops working everywhere); True if it was live."""
    with write_transaction(db):
        return store_sessions.revoke(db, session_id, time.time(), "logout") > 0
