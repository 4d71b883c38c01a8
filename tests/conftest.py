"""Shared fixtures, the offline environment, and a guard that fails any network access."""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path

# The offline environment, before anything imports torch or ultralytics.
os.environ["REALCAL_OFFLINE"] = "1"
if "REALCAL_CACHE_DIR" not in os.environ:
    # A private cache for this run, removed when the run ends (never left behind in /tmp).
    _own_cache = tempfile.mkdtemp(prefix="realcal-test-cache-")
    os.environ["REALCAL_CACHE_DIR"] = _own_cache
    atexit.register(shutil.rmtree, _own_cache, True)
from engine import env  # noqa: E402

env.configure()

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("REALCAL_SHARED_DATA", REPO.parent / "shared" / "data"))

_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_loopback(host) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode(errors="replace")
    host = str(host).strip("[]").lower()
    return (host in _LOOPBACK_NAMES or host.startswith("127.") or host == "::1"
            or host == "0.0.0.0" or host == "")


def _network_guard(event: str, args) -> None:
    if event == "socket.getaddrinfo":
        if not _is_loopback(args[0]):
            raise RuntimeError(f"network access blocked in tests: DNS lookup of {args[0]!r}")
    elif event == "socket.connect":
        sock, address = args[0], args[1]
        if getattr(sock, "family", None) in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if not _is_loopback(host):
                raise RuntimeError(f"network access blocked in tests: connect to {address!r}")


sys.addaudithook(_network_guard)


def shared(*parts: str) -> Path:
    """A path under ../shared/data, skipping the test with a reason when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not available: {p} is absent (see ../shared/data/README.md)")
    return p


@pytest.fixture
def ws(tmp_path):
    from engine.workspace import Workspace

    return Workspace.init(tmp_path / "ws")


@pytest.fixture
def coco_sample():
    return shared("coco-sample", "test_coco.json")


@pytest.fixture
def ochuman_sample():
    return shared("ochuman-sample", "test_ochuman.json")


@pytest.fixture
def lspet():
    return shared("lspet")


def snapshot(ws) -> tuple:
    """Everything an import may change: files on disk and the row counts of every table."""
    files = sorted(str(p.relative_to(ws.root)) for p in ws.root.rglob("*")
                   if p.is_file() and not p.name.startswith("realcal.db"))
    with ws.connect() as db:
        counts = tuple(db.execute(f"SELECT COUNT(*) FROM [{t}]").fetchone()[0]
                       for t in ("images", "persons", "batches", "events"))
    return tuple(files), counts
