"""Users, the review queue (items, slots, leases), decisions and the audit log."""
from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlite_utils

# ----------------------------------------------------------------------------- users
# User names are unique whatever their case: lookups ignore case, and a name is stored as typed.

def add_user(db: sqlite_utils.Database, name: str, role: str, password_hash: str) -> int:
    db.execute("INSERT INTO users (name, role, password_hash) VALUES (?, ?, ?)", [name, role, password_hash])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def set_password(db: sqlite_utils.Database, user_id: int, password_hash: str) -> int:
    return db.execute("UPDATE users SET password_hash = ? WHERE id = ?", [password_hash, user_id]).rowcount


def set_disabled(db: sqlite_utils.Database, user_id: int, disabled: bool) -> int:
    return db.execute("UPDATE users SET disabled = ? WHERE id = ?", [int(disabled), user_id]).rowcount


def users(db: sqlite_utils.Database, include_disabled: bool = True) -> list[dict[str, Any]]:
    sql = "SELECT id, name, role, password_hash, disabled, created_at FROM users"
    if not include_disabled:
        sql += " WHERE disabled = 0"
    return [dict(r) for r in db.query(sql + " ORDER BY name COLLATE NOCASE, id")]


def users_named(db: sqlite_utils.Database, name: str) -> list[dict[str, Any]]:
    """Every account whose name equals ``name`` ignoring case (more than one only in a workspace
    made before names became case-insensitive); the exact spelling first."""
    return [dict(r) for r in db.query("SELECT * FROM users WHERE name = ? COLLATE NOCASE "
                                      "ORDER BY name = ? DESC, id", [name, name])]


def user(db: sqlite_utils.Database, name: str) -> dict[str, Any] | None:
    """The account called ``name`` (any case): the exact spelling when several differ only in case,
    else the single match; None when there is none or the name is ambiguous."""
    rows = users_named(db, name)
    if len(rows) == 1 or (rows and rows[0]["name"] == name):
        return rows[0]
    return None


def active_user_count(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT COUNT(*) FROM users WHERE disabled = 0").fetchone()[0]


def user_count(db: sqlite_utils.Database) -> int:
    """Accounts, disabled ones included."""
    return db.execute("SELECT COUNT(*) FROM users").fetchone()[0]


# ----------------------------------------------------------------------------- queue

def add_items(db: sqlite_utils.Database, rows: Sequence[dict]) -> int:
    n = 0
    for r in rows:
        cur = db.execute("INSERT OR IGNORE INTO review_items (image_id, run_id, rank, slots, honeypot) "
                         "VALUES (?, ?, ?, ?, ?)", [r["image_id"], r.get("run_id"), r["rank"], r["slots"],
                                                    int(r.get("honeypot", 0))])
        if cur.rowcount:
            item_id = db.execute("SELECT id FROM review_items WHERE image_id = ?", [r["image_id"]]).fetchone()[0]
            for slot in range(r["slots"]):
                db.execute("INSERT INTO review_slots (item_id, slot) VALUES (?, ?)", [item_id, slot])
            n += 1
    return n


def max_rank(db: sqlite_utils.Database) -> int:
    return db.execute("SELECT COALESCE(MAX(rank), 0) FROM review_items").fetchone()[0]


def leased_slots(db: sqlite_utils.Database, user_name: str, now: float) -> list[dict]:
    return [dict(r) for r in db.query(
        "SELECT s.item_id, s.slot, s.lease_until, i.image_id, i.rank, i.honeypot FROM review_slots s "
        "JOIN review_items i ON i.id = s.item_id WHERE s.lease_user = ? AND s.lease_until > ? "
        "AND s.decided_by IS NULL ORDER BY i.rank, s.slot", [user_name, now])]


def free_slots(db: sqlite_utils.Database, user_name: str, now: float, limit: int) -> list[dict]:
    """Undecided, unleased (or expired) slots of open items this user has not touched."""
    return [dict(r) for r in db.query(
        "SELECT s.item_id, s.slot FROM review_slots s JOIN review_items i ON i.id = s.item_id "
        "WHERE i.state = 'open' AND s.decided_by IS NULL "
        "AND (s.lease_user IS NULL OR s.lease_until <= ?) "
        "AND NOT EXISTS (SELECT 1 FROM review_slots o WHERE o.item_id = s.item_id AND o.slot != s.slot "
        "                AND (o.decided_by = ? OR (o.lease_user = ? AND o.lease_until > ?))) "
        "AND NOT EXISTS (SELECT 1 FROM review_audit a WHERE a.item_id = s.item_id AND a.user = ? "
        "                AND a.action = 'skip') "
        "ORDER BY i.rank, s.slot LIMIT ?", [now, user_name, user_name, now, user_name, limit])]


def open_item_count(db: sqlite_utils.Database, user_name: str, now: float) -> int:
    """Open items this user may still decide: their live leases plus the items ``free_slots``
    would offer them (counted once however many of their slots are free)."""
    return db.execute(
        "SELECT COUNT(DISTINCT s.item_id) FROM review_slots s JOIN review_items i ON i.id = s.item_id "
        "WHERE i.state = 'open' AND s.decided_by IS NULL "
        "AND ((s.lease_user = ? AND s.lease_until > ?) OR ((s.lease_user IS NULL OR s.lease_until <= ?) "
        "AND NOT EXISTS (SELECT 1 FROM review_slots o WHERE o.item_id = s.item_id AND o.slot != s.slot "
        "                AND (o.decided_by = ? OR (o.lease_user = ? AND o.lease_until > ?))) "
        "AND NOT EXISTS (SELECT 1 FROM review_audit a WHERE a.item_id = s.item_id AND a.user = ? "
        "                AND a.action = 'skip')))",
        [user_name, now, now, user_name, user_name, now, user_name]).fetchone()[0]


def take_lease(db: sqlite_utils.Database, item_id: int, slot: int, user_name: str, until: float, now: float) -> bool:
    cur = db.execute("UPDATE review_slots SET lease_user = ?, lease_until = ? WHERE item_id = ? AND slot = ? "
                     "AND decided_by IS NULL AND (lease_user IS NULL OR lease_until <= ?)",
                     [user_name, until, item_id, slot, now])
    return cur.rowcount == 1


def release_lease(db: sqlite_utils.Database, item_id: int, slot: int, user_name: str) -> None:
    db.execute("UPDATE review_slots SET lease_user = NULL, lease_until = NULL WHERE item_id = ? AND slot = ? "
               "AND lease_user = ? AND decided_by IS NULL", [item_id, slot, user_name])


def slot(db: sqlite_utils.Database, item_id: int, slot_no: int) -> dict | None:
    rows = list(db.query("SELECT * FROM review_slots WHERE item_id = ? AND slot = ?", [item_id, slot_no]))
    return dict(rows[0]) if rows else None


def item(db: sqlite_utils.Database, item_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM review_items WHERE id = ?", [item_id]))
    return dict(rows[0]) if rows else None


def items_for_run(db: sqlite_utils.Database, run_id: int, honeypot: bool | None = None) -> list[dict]:
    sql, params = "SELECT * FROM review_items WHERE run_id = ?", [run_id]
    if honeypot is not None:
        sql += " AND honeypot = ?"
        params.append(int(honeypot))
    return [dict(r) for r in db.query(sql + " ORDER BY rank", params)]


def open_slots(db: sqlite_utils.Database, item_id: int) -> list[dict]:
    """The item's slots nobody has decided yet."""
    return [dict(r) for r in db.query("SELECT * FROM review_slots WHERE item_id = ? AND decided_by IS NULL "
                                      "ORDER BY slot", [item_id])]


def mark_decided(db: sqlite_utils.Database, item_id: int, slot_no: int, user_name: str) -> None:
    db.execute("UPDATE review_slots SET decided_by = ?, lease_user = NULL, lease_until = NULL "
               "WHERE item_id = ? AND slot = ?", [user_name, item_id, slot_no])


def undecide(db: sqlite_utils.Database, item_id: int, slot_no: int, user_name: str, until: float) -> None:
    db.execute("UPDATE review_slots SET decided_by = NULL, lease_user = ?, lease_until = ? "
               "WHERE item_id = ? AND slot = ?", [user_name, until, item_id, slot_no])


def insert_decision(db: sqlite_utils.Database, row: dict) -> int:
    db.execute("INSERT INTO decisions (item_id, slot, user, decision, reasons, shown_at, decided_at, active_s, "
               "idle, corrected_person_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
               [row["item_id"], row["slot"], row["user"], row["decision"], json.dumps(row.get("reasons") or []),
                row["shown_at"], row["decided_at"], row["active_s"], int(row["idle"]),
                row.get("corrected_person_id")])
    return db.execute("SELECT last_insert_rowid()").fetchone()[0]


def live_decisions(db: sqlite_utils.Database, item_id: int | None = None, user_name: str | None = None) -> list[dict]:
    sql = "SELECT * FROM decisions WHERE undone = 0"
    params: list[int | str] = []
    if item_id is not None:
        sql += " AND item_id = ?"
        params.append(item_id)
    if user_name is not None:
        sql += " AND user = ?"
        params.append(user_name)
    out = []
    for r in db.query(sql + " ORDER BY id", params):
        r = dict(r)
        r["reasons"] = json.loads(r["reasons"] or "[]")
        out.append(r)
    return out


def mark_undone(db: sqlite_utils.Database, decision_id: int) -> None:
    db.execute("UPDATE decisions SET undone = 1 WHERE id = ?", [decision_id])


def set_state(db: sqlite_utils.Database, item_id: int, state: str, resolved_by: str | None = None) -> None:
    db.execute("UPDATE review_items SET state = ?, resolved_by = ? WHERE id = ?", [state, resolved_by, item_id])


def audit(db: sqlite_utils.Database, user_name: str, action: str, item_id: int | None = None,
          slot_no: int | None = None, payload: dict | None = None) -> None:
    db.execute("INSERT INTO review_audit (ts, user, action, item_id, slot, payload) VALUES (?, ?, ?, ?, ?, ?)",
               [time.time(), user_name, action, item_id, slot_no, json.dumps(payload or {}, default=str)])


def progress(db: sqlite_utils.Database, user_name: str) -> dict[str, int]:
    mine = db.execute("SELECT COUNT(*) FROM decisions WHERE user = ? AND undone = 0", [user_name]).fetchone()[0]
    open_slots = db.execute("SELECT COUNT(*) FROM review_slots s JOIN review_items i ON i.id = s.item_id "
                            "WHERE s.decided_by IS NULL AND i.state = 'open'").fetchone()[0]
    states = {r["state"]: r["n"] for r in db.query("SELECT state, COUNT(*) AS n FROM review_items GROUP BY state")}
    return {"done_by_me": mine, "open_slots": open_slots, **{f"items_{k}": v for k, v in states.items()}}


def conflicts(db: sqlite_utils.Database) -> list[dict]:
    return [dict(r) for r in db.query("SELECT * FROM review_items WHERE state = 'conflict' ORDER BY rank")]


def decision_table(db: sqlite_utils.Database) -> list[dict]:
    """Live decisions with their item, image and lineage facts (for the stats view)."""
    out = []
    for r in db.query(
            "SELECT d.*, i.honeypot, i.image_id, i.state, l.generator, l.prompt, l.details AS lineage, "
            "img.batch_id "
            "FROM decisions d JOIN review_items i ON i.id = d.item_id JOIN images img ON img.id = i.image_id "
            "LEFT JOIN lineage l ON l.image_id = i.image_id WHERE d.undone = 0 ORDER BY d.id"):
        r = dict(r)
        r["reasons"] = json.loads(r["reasons"] or "[]")
        r["lineage"] = json.loads(r["lineage"]) if r["lineage"] else {}
        out.append(r)
    return out


def curation_scores(db: sqlite_utils.Database, run_id: int, image_ids: Sequence[int]) -> dict[int, list[dict]]:
    """The curation run's stage results for these images (for the review item's side panel)."""
    out: dict[int, list[dict]] = {i: [] for i in image_ids}
    if not image_ids:
        return out
    marks = ",".join("?" * len(image_ids))
    for r in db.query(f"SELECT * FROM curation_results WHERE run_id = ? AND image_id IN ({marks}) "
                      "ORDER BY image_id, rowid", [run_id, *image_ids]):
        r = dict(r)
        r["details"] = json.loads(r["details"]) if r["details"] else None
        out[r["image_id"]].append(r)
    return out
