import sqlite3

import pytest

from engine.workspace import Workspace
from store import db as store_db
from store import events, settings


def test_init_creates_schema_in_wal_mode(ws):
    with ws.connect() as db:
        tables = set(db.table_names())
        assert {"images", "persons", "batches", "events", "settings", "_sqlite_migrations"} <= tables
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert db.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


def test_reapplying_migrations_is_a_noop(ws):
    assert store_db.migrate(ws.db_path) == []
    Workspace.init(ws.root)  # re-running init on an existing workspace
    with ws.connect() as db:
        names = [r["name"] for r in db.query("SELECT name FROM _sqlite_migrations")]
        assert len(names) == len(set(names))
        assert store_db.pending_migrations(db) == []
        assert [e["kind"] for e in events.recent(db)] == ["workspace.init"]


def test_event_log_is_append_only(ws):
    with ws.connect() as db:
        events.log(db, "test", {"a": 1})
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE events SET kind = 'x'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM events")
        assert events.recent(db, kind="test")[0]["payload"] == {"a": 1}


def test_settings_round_trip(ws):
    with ws.connect() as db:
        settings.set_value(db, "teacher", {"path": None, "conf": 0.25})
        settings.set_value(db, "teacher", {"path": "x.pt"})
        assert settings.get(db, "teacher") == {"path": "x.pt"}
        assert settings.get(db, "missing", 3) == 3


def test_check_constraints_refuse_bad_rows(ws):
    with ws.connect() as db:
        db.execute("INSERT INTO batches (kind) VALUES ('import')")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute("INSERT INTO images (batch_id, kind, split, file_name, sha256, ext, width, "
                       "height, bytes) VALUES (1, 'real', 'holdout', 'a.jpg', 'x', 'jpg', 1, 1, 1)")


def test_concurrent_first_open_does_not_race(tmp_path):
    import os
    import subprocess
    import sys
    import time

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    go = time.time() + 3  # all four start together
    code = ("import sys, time; from engine.workspace import Workspace; from store import events;"
            "t = float(sys.argv[2]); time.sleep(max(0, t - time.time()));"
            "ws = Workspace.init(sys.argv[1]); db = ws.connect(); events.log(db, 'concurrent');"
            "db.conn.commit(); db.close(); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ws"), str(go)],
                              cwd=repo, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=120) for p in procs]
    assert [out.strip() for out, _ in results] == ["ok"] * 4, [err for _, err in results]
    with Workspace.open(tmp_path / "ws").connect() as db:
        assert len(events.recent(db, kind="concurrent")) == 4
        assert len(events.recent(db, kind="workspace.init")) >= 1


def test_opening_a_folder_that_is_not_a_workspace_says_how_to_make_one(tmp_path):
    from engine.errors import WorkspaceError

    with pytest.raises(WorkspaceError, match="realcal -w .* init"):
        Workspace.open(tmp_path)


def test_label_counts_and_curation_run_config(ws, tmp_path):
    from engine.io import parse
    from engine.io.common import run_import
    from store import curation as store_curation
    from store import images as store_images
    from store import synthetic as store_synthetic
    from tests.helpers import make_coco

    run_import(ws, parse("coco", make_coco(tmp_path / "c", n=3)), split="test")
    with ws.connect() as db:
        assert store_images.count_real_persons(db, split="test") == 3
        assert store_images.count_real_persons(db, split="val") == 0
        assert store_images.count_real_persons(db, split="test", sources=("corrected",)) == 0
        assert store_images.labelled_real_images_by_split(db) == {"test": 3}
        assert store_synthetic.prompts_by_image(db) == {}
        run_id = store_curation.create_run(db, None, {"embedder": {"name": "e", "params": {}}})
        assert store_curation.run_config(db, run_id) == {"embedder": {"name": "e", "params": {}}}
        with pytest.raises(KeyError):
            store_curation.run_config(db, run_id + 1)
