"""Access fails closed: a mode fixed at start, revocable server-side sessions, a secret outside the
database, httpOnly (and, over TLS, Secure) cookies, throttled logins, a stable cookie name,
case-insensitive user names, reviewer statistics for admins, and bcrypt's 72-byte limit as a clear
error."""
from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from streamlit.testing.v1 import AppTest

from engine import auth, review
from engine.cli import main
from engine.errors import RealcalError
from store import review as store_review
from tests.helpers import queued_synthetic_workspace

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fast_bcrypt(monkeypatch):
    """Cheap bcrypt rounds: these tests hash and check many passwords."""
    import bcrypt

    real = bcrypt.gensalt
    monkeypatch.setattr(bcrypt, "gensalt", lambda rounds=4, prefix=b"2b": real(4, prefix))
    monkeypatch.delenv(auth.SECRET_ENV, raising=False)
    monkeypatch.delenv(auth.MODE_ENV, raising=False)


@pytest.fixture
def accounts(ws, monkeypatch):
    with ws.connect() as db:
        review.add_user(db, "boss", "admin", "admin-password")
        review.add_user(db, "Frank", "annotator", "frank-password")
    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    return ws


def cli(*args, stdin: str | None = None):
    r = CliRunner().invoke(main, [str(a) for a in args], input=stdin)
    assert "Traceback" not in r.output, r.output
    return r


def _login(ws, name, password, address="10.0.0.1", now=None):
    with ws.connect() as db:
        return auth.login(db, auth.secret_key(ws.root), name, password, address=address, now=now)


def _who(ws, cookie):
    with ws.connect() as db:
        return auth.session_user(db, auth.secret_key(ws.root), cookie)


# ----------------------------------------------------------------------------- the mode, fail closed

def _app(monkeypatch, cookie: str | None = None, address: str | None = None) -> AppTest:
    import ui.auth

    monkeypatch.setattr(ui.auth, "request_cookie", lambda name: cookie)
    monkeypatch.setattr(ui.auth, "client_address", lambda: address)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _shows_admin_pages(at: AppTest) -> bool:
    return any(t.value == "Data" for t in at.title)


def test_disabling_every_user_while_the_app_runs_lets_nobody_in(accounts, monkeypatch):
    ws = accounts
    cookie, _ = _login(ws, "boss", "admin-password")
    assert _shows_admin_pages(_app(monkeypatch, cookie))
    for name in ("boss", "Frank"):
        assert cli("-w", ws.root, "user", "disable", name).exit_code == 0
    at = _app(monkeypatch, cookie=None)                  # an anonymous visitor
    assert not _shows_admin_pages(at)
    assert any("No account is active" in e.value for e in at.error)
    assert not _shows_admin_pages(_app(monkeypatch, cookie))   # and the admin's old cookie
    page = AppTest.from_file(str(REPO / "app_pages/data.py"), default_timeout=60)
    page.run()
    assert any("log in" in e.value for e in page.error) and not any(t.value == "Data" for t in page.title)


def test_the_mode_is_fixed_at_start_and_never_falls_back_to_single_user(ws, monkeypatch):
    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    with ws.connect() as db:
        assert auth.start_mode(db) == "single"
        assert auth.current_mode(db, "accounts") == "accounts"     # started with accounts: stays so
    monkeypatch.setenv(auth.MODE_ENV, "accounts")
    at = _app(monkeypatch)
    assert not _shows_admin_pages(at)
    monkeypatch.setenv(auth.MODE_ENV, "single")
    with ws.connect() as db:
        review.add_user(db, "boss", "admin", "admin-password")
        review.set_disabled(db, "boss", True)
        assert auth.start_mode(db) == "accounts"                   # a disabled account still counts
        assert auth.current_mode(db, "single") == "accounts"
    assert not _shows_admin_pages(_app(monkeypatch))


def test_single_user_mode_serves_loopback_only(ws, monkeypatch):
    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    assert _shows_admin_pages(_app(monkeypatch, address=None))
    at = _app(monkeypatch, address="192.0.2.7")
    assert not _shows_admin_pages(at)
    assert any("single-user mode" in e.value for e in at.error)


# ----------------------------------------------------------------------------- sessions

def test_logout_revokes_the_session_so_a_copied_cookie_stops_working(accounts, monkeypatch):
    ws = accounts
    cookie, user = _login(ws, "boss", "admin-password")
    copied = str(cookie)
    at = _app(monkeypatch, cookie)
    assert _shows_admin_pages(at)
    next(b for b in at.sidebar.button if b.label == "Log out").click().run()
    assert not _shows_admin_pages(at)
    assert _who(ws, copied) is None
    assert not _shows_admin_pages(_app(monkeypatch, copied))


def test_password_change_and_disable_and_user_logout_revoke_sessions(accounts):
    ws = accounts
    for revoke in (["user", "passwd", "boss", "--password-stdin"], ["user", "disable", "boss"],
                   ["user", "logout", "boss"]):
        cli("-w", ws.root, "user", "enable", "boss")
        cookie, _ = _login(ws, "boss", "admin-password")
        assert _who(ws, cookie)["name"] == "boss"
        r = cli("-w", ws.root, *revoke, stdin="admin-password\n")
        assert r.exit_code == 0 and "1 session" in r.output, r.output
        assert _who(ws, cookie) is None, revoke


def test_a_forged_or_tampered_cookie_is_refused(accounts):
    ws = accounts
    cookie, _ = _login(ws, "boss", "admin-password")
    token, sig = cookie.split(".")
    for bad in (f"{token}.{sig[:-1]}A" if sig[-1] != "A" else f"{token}.{sig[:-1]}B", f"{token}x.{sig}",
                token, "", "a.b.c", "." * 300):
        assert _who(ws, bad) is None, bad


def test_sessions_expire(accounts):
    ws = accounts
    cookie, _ = _login(ws, "boss", "admin-password")
    with ws.connect() as db:
        secret = auth.secret_key(ws.root)
        assert auth.session_user(db, secret, cookie, now=time.time() + auth.SESSION_TTL_S - 60)
        assert auth.session_user(db, secret, cookie, now=time.time() + auth.SESSION_TTL_S + 60) is None


# ----------------------------------------------------------------------------- the secret

def test_the_signing_secret_lives_outside_the_database(accounts, monkeypatch):
    ws = accounts
    cookie, _ = _login(ws, "boss", "admin-password")
    path = auth.secret_path(ws.root)
    assert path.parent == ws.db_path.parent and stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    token = cookie.split(".")[0]
    raw = b"".join(p.read_bytes() for p in ws.root.glob("realcal.db*"))
    assert secret.encode() not in raw and token.encode() not in raw      # no secret, no usable token
    with ws.connect() as db:
        assert db.execute("SELECT COUNT(*) FROM settings WHERE key LIKE 'auth.%'").fetchone()[0] == 0
    monkeypatch.setenv(auth.SECRET_ENV, "e" * 64)                       # the environment wins
    assert _who(ws, cookie) is None
    monkeypatch.setenv(auth.SECRET_ENV, "short")
    with pytest.raises(RealcalError, match="at least 32"):
        auth.secret_key(ws.root)
    monkeypatch.delenv(auth.SECRET_ENV)
    path.chmod(0o644)
    with pytest.raises(RealcalError, match="chmod 600"):
        auth.secret_key(ws.root)


def test_the_old_cookie_key_in_the_database_is_removed_by_the_migration(tmp_path):
    from engine.workspace import Workspace
    from store.migrations import sessions

    ws = Workspace.init(tmp_path / "w")
    with ws.connect() as db:
        db.execute("DELETE FROM _sqlite_migrations WHERE migration_set = ?", [sessions.migrations.name])
        db.execute("DROP TABLE auth_sessions")
        db.execute("DROP TABLE auth_attempts")
        db.execute("DROP INDEX users_name_nocase")
        db.execute("INSERT INTO settings (key, value) VALUES ('auth.cookie_key', '\"deadbeef\"')")
        db.conn.commit()
    with Workspace.open(ws.root).connect() as db:
        assert db.execute("SELECT COUNT(*) FROM settings WHERE key = 'auth.cookie_key'").fetchone()[0] == 0


# ----------------------------------------------------------------------------- cookies over HTTP

@pytest.fixture
def client(accounts):
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from ui.auth_routes import routes

    return TestClient(Starlette(routes=routes()), follow_redirects=False)


def _post(client, name, password, **kw):
    return client.post("/auth/login", data={"username": name, "password": password}, **kw)


def test_the_login_cookie_is_httponly_and_secure_over_tls(client, accounts):
    r = _post(client, "boss", "admin-password")
    assert r.status_code == 303 and r.headers["location"] == "/"
    header = r.headers["set-cookie"]
    name = auth.cookie_name(accounts.root)
    assert header.startswith(f"{name}=") and "HttpOnly" in header and "SameSite=lax" in header
    assert "Secure" not in header
    value = header.split(";")[0].split("=", 1)[1]
    assert _who(accounts, value)["name"] == "boss"
    from starlette.applications import Starlette
    from starlette.testclient import TestClient

    from ui.auth_routes import routes

    tls = TestClient(Starlette(routes=routes()), base_url="https://testserver", follow_redirects=False)
    r = _post(tls, "boss", "admin-password")
    assert r.status_code == 303 and "Secure" in r.headers["set-cookie"] and "HttpOnly" in r.headers["set-cookie"]


def test_a_login_posted_from_another_site_is_refused(client):
    r = _post(client, "boss", "admin-password", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and "set-cookie" not in r.headers


def test_a_login_returns_to_the_page_asked_for_and_never_elsewhere(client):
    from ui.auth_routes import login_link, safe_next

    page = client.get("/auth/login?next=/results")
    assert page.status_code == 200 and 'name="next" value="/results"' in page.text
    r = client.post("/auth/login", data={"username": "boss", "password": "admin-password", "next": "/results"})
    assert r.status_code == 303 and r.headers["location"] == "/results"
    for bad in ("//evil.example", "https://evil.example/x", "/auth/login", "/a/../b", "/x?y=1", "\\evil", "", None,
                "/" + "a" * 300):
        assert safe_next(bad) == "/", bad
    wrong = client.post("/auth/login", data={"username": "boss", "password": "nope", "next": "//evil.example"})
    assert wrong.status_code == 401 and 'name="next" value="/"' in wrong.text
    assert login_link("/jobs") == "/auth/login?next=/jobs" and login_link(None) == "/auth/login"


def test_the_cookie_name_is_stable_across_restarts_and_distinct_per_workspace(accounts, tmp_path):
    code = "import sys; from engine.auth import cookie_name; print(cookie_name(sys.argv[1]))"
    names = {subprocess.run([sys.executable, "-c", code, str(accounts.root)], capture_output=True, text=True,
                            cwd=REPO, check=True).stdout.strip() for _ in range(2)}
    assert names == {auth.cookie_name(accounts.root)}
    assert auth.cookie_name(tmp_path / "other") != auth.cookie_name(accounts.root)


# ----------------------------------------------------------------------------- throttling

def test_logins_are_throttled_per_user(client, accounts):
    codes = [_post(client, "boss", f"wrong-{i}").status_code for i in range(auth.MAX_USER_FAILURES)]
    assert codes == [401] * auth.MAX_USER_FAILURES
    r = _post(client, "boss", "admin-password")             # even the right password, for a while
    assert r.status_code == 429 and "too many failed logins" in r.text and int(r.headers["retry-after"]) > 0
    assert "set-cookie" not in r.headers
    assert _post(client, "BOSS", "admin-password").status_code == 429       # the name in any case
    assert _post(client, "Frank", "frank-password").status_code == 303     # other users are not locked out
    later = time.time() + auth.THROTTLE_WINDOW_S + 1
    cookie, user = _login(accounts, "boss", "admin-password", address="testclient", now=later)
    assert user["name"] == "boss"


def test_logins_are_throttled_per_address(accounts):
    ws = accounts
    now = time.time()
    for i in range(auth.MAX_ADDRESS_FAILURES):
        with pytest.raises(auth.LoginRefused, match="wrong user name or password"):
            _login(ws, f"nobody{i}", "whatever-pw", address="198.51.100.9", now=now + i * 0.01)
    with pytest.raises(auth.LoginRefused, match="198.51.100.9") as exc:
        _login(ws, "Frank", "frank-password", address="198.51.100.9", now=now + 1)
    assert exc.value.retry_after and exc.value.retry_after > 0
    assert _login(ws, "Frank", "frank-password", address="198.51.100.10", now=now + 1)[1]["name"] == "Frank"


def test_concurrent_guesses_cannot_slip_past_the_throttle(accounts, monkeypatch):
    """Guesses sent at once (the password check is slow) still meet the limit: the check and the
    attempt's record are one transaction."""
    from concurrent.futures import ThreadPoolExecutor

    ws = accounts
    slow = review.check_password
    monkeypatch.setattr(review, "check_password", lambda pw, h: (time.sleep(0.3), slow(pw, h))[1])
    secret = auth.secret_key(ws.root)

    def guess(i):
        with ws.connect() as db:
            try:
                auth.login(db, secret, "boss", f"guess-{i}", address=f"198.51.100.{i}")
            except auth.LoginRefused as exc:
                return "throttled" if exc.retry_after else "wrong"
        return "in"

    with ThreadPoolExecutor(12) as pool:
        results = list(pool.map(guess, range(12)))
    assert results.count("wrong") == auth.MAX_USER_FAILURES and results.count("throttled") == 12 - 5


# ----------------------------------------------------------------------------- user names

def test_user_names_are_case_insensitive_and_unique(accounts, client):
    ws = accounts
    for spelling in ("frank", "FRANK", "Frank"):
        cookie, user = _login(ws, spelling, "frank-password")
        assert user["name"] == "Frank" and _who(ws, cookie)["name"] == "Frank"
    assert _post(client, "fRaNk", "frank-password").status_code == 303
    r = cli("-w", ws.root, "user", "add", "frank", "--role", "admin", "--password-stdin", stdin="another-pass\n")
    assert r.exit_code == 1 and "already exists" in r.output and "Frank" in r.output
    with ws.connect() as db:
        assert [u["name"] for u in store_review.users(db)] == ["boss", "Frank"]
        with pytest.raises(sqlite3.IntegrityError):       # the database holds the rule too
            store_review.add_user(db, "FRANK", "admin", "x")
    assert cli("-w", ws.root, "user", "disable", "frank").exit_code == 0
    with pytest.raises(auth.LoginRefused):
        _login(ws, "Frank", "frank-password")


def test_a_workspace_with_names_differing_only_in_case_still_opens(tmp_path):
    from engine.workspace import Workspace
    from store.migrations import sessions

    ws = Workspace.init(tmp_path / "w")
    with ws.connect() as db:
        db.execute("DROP INDEX users_name_nocase")
        db.execute("DELETE FROM _sqlite_migrations WHERE migration_set = ? AND name = ?",
                   [sessions.migrations.name, "m002_user_names_case_insensitive"])
        db.execute("INSERT INTO users (name, role, password_hash) VALUES ('ann', 'admin', ?), ('Ann', 'admin', ?)",
                   [review.hash_password("password-1"), review.hash_password("password-2")])
        db.conn.commit()
    ws = Workspace.open(ws.root)
    assert _login(ws, "ann", "password-1")[1]["name"] == "ann"      # the exact spelling
    with pytest.raises(auth.LoginRefused):
        _login(ws, "ANN", "password-1")                            # ambiguous: refused
    r = cli("-w", ws.root, "user", "disable", "ANN")
    assert r.exit_code == 1 and "several accounts" in r.output


# ----------------------------------------------------------------------------- statistics

def test_reviewer_statistics_are_for_admins_an_annotator_sees_their_own(ws, tmp_path, monkeypatch):
    queued_synthetic_workspace(ws, tmp_path, n=4)
    with ws.connect() as db:
        review.add_user(db, "ann", "annotator", "annotator-pass")
        review.add_user(db, "bob", "annotator", "annotator-pass")
        review.add_user(db, "boss", "admin", "admin-password")
        db.execute("UPDATE review_items SET honeypot = 1 WHERE rank = 1")
        db.conn.commit()
        for who in ("ann", "bob"):
            for s in review.lease(db, who, n=2):
                review.decide(db, who, s["item_id"], s["slot"], "accept", shown_at=time.time() - 3)
        own = review.stats_for(db, {"name": "ann", "role": "annotator"})
        full = review.stats_for(db, {"name": "boss", "role": "admin"})
    assert set(own["per_reviewer"]) == {"ann"} and own["scope"] == "own"
    assert not any("honeypot" in k for k in own["per_reviewer"]["ann"])
    assert "acceptance_by_generator" not in own
    assert set(full["per_reviewer"]) == {"ann", "bob"} and "honeypots" in full["per_reviewer"]["ann"]

    monkeypatch.setenv("REALCAL_WORKSPACE", str(ws.root))
    at = AppTest.from_file(str(REPO / "app_pages/review.py"), default_timeout=60)
    at.session_state["realcal_user"] = {"name": "ann", "role": "annotator", "single_user": False}
    at.run()
    at.segmented_control[0].set_value("Stats").run()
    assert not at.exception, at.exception
    frames = [t.value for t in at.table]
    assert len(frames) == 1 and list(frames[0]["Reviewer"]) == ["ann"]
    assert not any("honeypot" in c.lower() for c in frames[0].columns)


# ----------------------------------------------------------------------------- passwords

def test_passwords_over_72_bytes_get_a_clear_error(accounts, client):
    ws = accounts
    long_pw = "é" * 37                                             # 37 characters, 74 bytes
    r = cli("-w", ws.root, "user", "add", "carol", "--role", "annotator", "--password-stdin", stdin=long_pw + "\n")
    assert r.exit_code == 1 and "72 bytes" in r.output and len(r.output.strip().splitlines()) == 1
    r = cli("-w", ws.root, "user", "passwd", "boss", "--password-stdin", stdin="x" * 100 + "\n")
    assert r.exit_code == 1 and "72 bytes" in r.output
    with ws.connect() as db:
        assert store_review.user(db, "carol") is None
    assert _who(ws, _login(ws, "boss", "admin-password")[0])["name"] == "boss"   # password unchanged
    assert cli("-w", ws.root, "user", "add", "carol", "--role", "annotator", "--password-stdin",
               stdin="x" * 72 + "\n").exit_code == 0                         # exactly 72 is fine
    assert _post(client, "boss", "y" * 500).status_code == 401             # a long try at login: refused


def test_the_secret_file_is_made_once_when_two_processes_race(tmp_path):
    from engine.workspace import Workspace

    ws = Workspace.init(tmp_path / "w")
    code = "import sys; from engine.auth import secret_key; print(secret_key(sys.argv[1]).decode())"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(ws.root)], stdout=subprocess.PIPE, text=True,
                              cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}) for _ in range(4)]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1 and len(keys.pop()) >= auth.MIN_SECRET_CHARS
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".realcal.secret.")]


# ----------------------------------------------------------------------------- `realcal app`

class _Exec(Exception):
    pass


def _start_app(monkeypatch, ws, *extra):
    """``realcal app`` up to the moment it would start Streamlit: (exit code, output, argv, env)."""
    seen: dict = {}

    def fake_serve(args, env):
        seen.update(args=args, env=env)
        raise _Exec()

    monkeypatch.setattr("engine.cli.app.serve", fake_serve)
    r = CliRunner().invoke(main, ["-w", str(ws.root), "app", "--no-worker", *map(str, extra)])
    assert "Traceback" not in r.output
    return r, seen


def test_realcal_app_fixes_the_mode_and_serves_the_login_page(ws, monkeypatch, tmp_path):
    r, seen = _start_app(monkeypatch, ws)
    assert isinstance(r.exception, _Exec) and seen["env"][auth.MODE_ENV] == "single"
    assert seen["args"][4].endswith("app_server.py") and seen["args"][0] == sys.executable
    with ws.connect() as db:
        review.add_user(db, "boss", "admin", "admin-password")
        review.set_disabled(db, "boss", True)
    r, seen = _start_app(monkeypatch, ws, "--host", "0.0.0.0")
    assert seen["env"][auth.MODE_ENV] == "accounts" and "nobody can log in" in r.output
    assert stat.S_IMODE(auth.secret_path(ws.root).stat().st_mode) == 0o600     # made at start
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    r, seen = _start_app(monkeypatch, ws, "--ssl-certfile", cert, "--ssl-keyfile", key)
    assert f"--server.sslCertFile={cert}" in seen["args"] and f"--server.sslKeyFile={key}" in seen["args"]
    assert "https://" in r.output
    r, _ = _start_app(monkeypatch, ws, "--ssl-certfile", cert)
    assert r.exit_code == 1 and "both --ssl-certfile and --ssl-keyfile" in r.output


def test_the_app_server_module_declares_the_login_route():
    from streamlit.web.server.app_discovery import discover_asgi_app

    found = discover_asgi_app(REPO / "app_server.py")
    assert found.is_asgi_app and found.import_string == "app_server:app"
