"""Human review: accounts, the leased queue, decisions with timing, undo, fixes, conflicts, stats.

Queue: items in the curation order; each has one review slot, and a configurable fraction of
overlap items (chosen by a hash of the image, so stable) have two. A reviewer leases a few slots
at a time (``BEGIN IMMEDIATE``, so two reviewers can never lease one slot); a lease expires after
``LEASE_S`` and the slot returns to the queue; nobody gets both slots of an item. An item is
accepted when every slot accepts (a fix counts as accept), rejected when every slot rejects, a
conflict otherwise, settled by an admin. Honeypots (known-bad copies: mirrored images whose label
was not mirrored) measure reviewer accuracy and never enter a training manifest.

Timing: each decision stores when the item was shown and decided; active seconds are capped at
``idle_cap_s`` (default 60) and capped decisions are flagged idle.
"""
from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine import poses
from engine.errors import RealcalError
from store import images as store_images
from store import review as store_review
from store import sessions as store_sessions
from store.db import write_transaction

LEASE_S = 600.0
DEFAULT_IDLE_CAP_S = 60.0
DEFAULT_OVERLAP = 0.05
REASON_TAGS = ("anatomy", "pose mismatch", "artefact", "duplicate", "unrealistic", "other")
ROLES = ("admin", "annotator")
NAME_RE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


# ----------------------------------------------------------------------------- accounts

BCRYPT_MAX_BYTES = 72      # bcrypt reads no further; longer passwords are refused, never truncated


def _check_password_length(password: str) -> None:
    n = len(password.encode())
    if n > BCRYPT_MAX_BYTES:
        raise RealcalError(f"passwords can be at most {BCRYPT_MAX_BYTES} bytes (bcrypt's limit); this one is "
                           f"{n} bytes in UTF-8. Choose a shorter one (a passphrase of a few words fits)")


def hash_password(password: str) -> str:
    import bcrypt

    _check_password_length(password)
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode()


def check_password(password: str, hashed: str) -> bool:
    """Whether ``password`` matches the bcrypt hash; False (never an error) for anything that cannot
    match, a password over bcrypt's 72 bytes included."""
    import bcrypt

    try:
        return bcrypt.checkpw(password.encode(), hashed.encode())
    except (ValueError, TypeError):
        return False


def _check_password_rules(password: str) -> None:
    if len(password) < 8:
        raise RealcalError("passwords need at least 8 characters")
    _check_password_length(password)


def _account(db, name: str) -> dict:
    u = store_review.user(db, name)
    if u is None:
        same = store_review.users_named(db, name)
        if same:
            raise RealcalError(f"{name!r} matches several accounts differing only in case "
                               f"({', '.join(r['name'] for r in same)}); give the exact spelling")
        raise RealcalError(f"no user {name!r}; `realcal user list` shows them")
    return u


def add_user(db, name: str, role: str, password: str) -> None:
    """Create an account. Names are unique whatever their case (``Frank`` and ``frank`` are one
    name) and log in in any case; the name is kept as typed."""
    if not NAME_RE.match(name):
        raise RealcalError("user names are 1-32 letters, digits, '.', '_' or '-'")
    if role not in ROLES:
        raise RealcalError(f"role must be one of {', '.join(ROLES)}")
    _check_password_rules(password)
    hashed = hash_password(password)

    def taken(existing: list[dict]) -> RealcalError:
        spelled = existing[0]["name"] if existing else name
        return RealcalError(f"user {name!r} already exists" + ("" if spelled == name else f" (as {spelled!r}; "
                                                                "names are case-insensitive)"))
    try:
        with write_transaction(db):
            existing = store_review.users_named(db, name)
            if existing:
                raise taken(existing)
            store_review.add_user(db, name, role, hashed)
            store_review.audit(db, "cli", "user.add", payload={"name": name, "role": role})
    except sqlite3.IntegrityError:      # another process added the name meanwhile
        raise taken(store_review.users_named(db, name)) from None


def change_password(db, name: str, password: str) -> int:
    """Set a new password and end every session of the account; returns how many were ended."""
    _check_password_rules(password)
    hashed = hash_password(password)
    with write_transaction(db):
        u = _account(db, name)
        store_review.set_password(db, u["id"], hashed)
        ended = store_sessions.revoke_user(db, u["id"], time.time(), "password changed")
        store_review.audit(db, u["name"], "user.password", payload={"sessions_ended": ended})
    return ended


def set_disabled(db, name: str, disabled: bool = True) -> int:
    """Disable (ending every session of the account) or enable an account; returns the number of
    sessions ended."""
    with write_transaction(db):
        u = _account(db, name)
        store_review.set_disabled(db, u["id"], disabled)
        ended = store_sessions.revoke_user(db, u["id"], time.time(), "disabled") if disabled else 0
        store_review.audit(db, "cli", "user.disable" if disabled else "user.enable",
                           payload={"name": u["name"], "sessions_ended": ended})
    return ended


def end_sessions(db, name: str) -> int:
    """Log an account out everywhere; returns the number of sessions ended."""
    with write_transaction(db):
        u = _account(db, name)
        ended = store_sessions.revoke_user(db, u["id"], time.time(), "logged out by an admin")
        store_review.audit(db, "cli", "user.logout", payload={"name": u["name"], "sessions_ended": ended})
    return ended


def authenticate(db, name: str, password: str) -> dict | None:
    """The account ``name`` (any case) if ``password`` is its password and it is active."""
    u = store_review.user(db, name)
    if u is None or u["disabled"] or not check_password(password, u["password_hash"]):
        return None
    return {"name": u["name"], "role": u["role"]}


# ----------------------------------------------------------------------------- the queue

def _is_overlap(sha256: str, fraction: float) -> bool:
    return int(hashlib.sha256(f"overlap:{sha256}".encode()).hexdigest()[:8], 16) / 16 ** 8 < fraction


def build_queue(ws, db, *, run_id: int | None = None, overlap: float = DEFAULT_OVERLAP,
                honeypots: int = 0, seed: int = 0) -> dict[str, int]:
    """Append the curation order (latest run by default) to the queue; optionally add honeypots."""
    from store import curation as store_curation

    if not 0 <= overlap <= 1:
        raise RealcalError("overlap must be within 0..1")
    if run_id is None:
        run = store_curation.latest_run(db)
        if run is None:
            raise RealcalError("no curation run yet: run `realcal curate` first")
        run_id = run["id"]
    order = store_curation.selection(db, run_id)
    shas = {im["id"]: im["sha256"] for im in store_images.list_images(db, kinds=["synthetic"])}
    base = store_review.max_rank(db)
    rows = [{"image_id": r["image_id"], "run_id": run_id, "rank": base + r["rank"],
             "slots": 2 if _is_overlap(shas.get(r["image_id"], ""), overlap) else 1} for r in order
            if r["image_id"] in shas]
    hp_rows = _make_honeypots(ws, db, [r["image_id"] for r in order][:max(honeypots * 3, honeypots)],
                              honeypots, base, len(rows), seed) if honeypots else []
    with write_transaction(db):
        added = store_review.add_items(db, rows + hp_rows)
        store_review.audit(db, "system", "queue.build", payload={"run_id": run_id, "added": added,
                                                                 "honeypots": len(hp_rows)})
    return {"added": added, "honeypots": len(hp_rows), "overlap_items": sum(1 for r in rows if r["slots"] == 2)}


def queue_images(db, image_ids: Sequence[int], user: str = "admin",
                 overlap: float = DEFAULT_OVERLAP) -> dict[str, Any]:
    """Append chosen synthetic images (a selection on the Data page) to the review queue, after everything already
    queued, in id order. Images already in the queue keep their place and state. Real images are left out (review
    judges a synthetic image against the pose it was made from). Returns how many were added, already queued, real
    (left out), and ids that are not images."""
    ids = sorted({int(i) for i in image_ids})
    if not ids:
        raise RealcalError("nothing selected: choose images to send to review")
    found = store_images.images_with_ids(db, ids)
    shas = {im["id"]: im["sha256"] for im in found if im["kind"] == "synthetic"}
    real = [im["id"] for im in found if im["kind"] != "synthetic"]
    unknown = sorted(set(ids) - {im["id"] for im in found})
    base = store_review.max_rank(db)
    rows = [{"image_id": i, "run_id": None, "rank": base + k + 1,
             "slots": 2 if _is_overlap(shas[i], overlap) else 1} for k, i in enumerate(i for i in ids if i in shas)]
    with write_transaction(db):
        added = store_review.add_items(db, rows)
        store_review.audit(db, user, "queue.add", payload={"requested": len(ids), "added": added,
                                                           "image_ids": ids[:1000]})
    return {"added": added, "already_queued": len(rows) - added, "real": len(real), "unknown": unknown}


def _make_honeypots(ws, db, candidates: list[int], n: int, base: int, span: int, seed: int) -> list[dict]:
    """Mirrored copies whose label was not mirrored: a known pose mismatch, to be rejected."""
    import io

    import cv2
    from PIL import Image

    from engine import integrity, media
    from store import batches as store_batches

    rng = np.random.default_rng(seed)
    images = {im["id"]: im for im in store_images.list_images(db, kinds=["synthetic"])}
    persons = store_images.persons_for_images(db, candidates, ["conditioning"])
    rows: list[dict] = []
    with write_transaction(db), integrity.new_files(ws, db) as files:
        batch_id = store_batches.create(db, kind="honeypot", format="mirrored-unflipped-label",
                                        dataset="honeypots", source="review queue", params={"n": n})
        for image_id in candidates:
            if len(rows) >= n:
                break
            im = images.get(image_id)
            if im is None or not persons[image_id]:
                continue
            bgr = cv2.imread(str(media.image_path(ws.root, im["sha256"], im["ext"])))
            if bgr is None:
                raise RealcalError(f"cannot read image {image_id}")
            buf = io.BytesIO()
            Image.fromarray(cv2.cvtColor(bgr[:, ::-1], cv2.COLOR_BGR2RGB)).save(buf, "PNG")
            info, data = media.inspect_bytes(buf.getvalue())
            if store_images.by_sha256(db, [info.sha256]):
                continue
            files.store(info, data)
            new_id = store_images.insert_image(db, {
                "batch_id": batch_id, "kind": "synthetic", "split": "train", "dataset": "honeypots",
                "file_name": f"honeypot_{image_id}.png", "source_id": str(image_id), "sha256": info.sha256,
                "ext": info.ext, "width": info.width, "height": info.height, "bytes": info.bytes})
            store_images.insert_persons(db, [{k: p[k] for k in store_images.PERSON_COLUMNS if k in p}
                                             | {"image_id": new_id, "batch_id": batch_id}
                                             for p in persons[image_id]])
            rows.append({"image_id": new_id, "rank": base + int(rng.integers(1, max(2, span + 1))),
                         "slots": 1, "honeypot": 1})
    return rows


def lease(db, user: str, n: int = 5, now: float | None = None) -> list[dict]:
    """The user's current leases, topped up to ``n`` from the queue (atomic)."""
    now = time.time() if now is None else now
    with write_transaction(db):
        mine = store_review.leased_slots(db, user, now)
        if len(mine) < n:
            items = {s["item_id"] for s in mine}
            need = n - len(mine)
            for s in store_review.free_slots(db, user, now, 2 * need):
                if need == 0:
                    break
                if s["item_id"] in items:  # never both slots of an item to one person
                    continue
                if store_review.take_lease(db, s["item_id"], s["slot"], user, now + LEASE_S, now):
                    items.add(s["item_id"])
                    need -= 1
            mine = store_review.leased_slots(db, user, now)
    return mine


def _item(db, item_id: int) -> dict:
    it = store_review.item(db, item_id)
    if it is None:
        raise RealcalError(f"no review item {item_id}")
    return it


def _settle(db, item_id: int) -> str:
    it = _item(db, item_id)
    live = store_review.live_decisions(db, item_id=item_id)
    if len(live) < it["slots"]:
        state = "open"
    elif all(d["decision"] in ("accept", "fix") for d in live):
        state = "accepted"
    elif all(d["decision"] == "reject" for d in live):
        state = "rejected"
    else:
        state = "conflict"
    store_review.set_state(db, item_id, state)
    return state


def decide(db, user: str, item_id: int, slot: int, decision: str, *, shown_at: float,
           reasons: Sequence[str] = (), keypoints: np.ndarray | None = None, person_id: int | None = None,
           idle_cap_s: float = DEFAULT_IDLE_CAP_S, now: float | None = None) -> dict[str, Any]:
    """Record one decision on a slot the user holds. ``fix`` stores a ``corrected`` person; a fix
    that changed nothing (same visibility, every joint within half a pixel) is stored as a plain
    ``accept`` and the result carries a ``note`` saying so."""
    now = time.time() if now is None else now
    if decision not in ("accept", "reject", "fix"):
        raise RealcalError("decision must be accept, reject or fix")
    bad = set(reasons) - set(REASON_TAGS)
    if bad:
        raise RealcalError(f"unknown reason tag(s) {sorted(bad)}; valid: {', '.join(REASON_TAGS)}")
    with write_transaction(db):
        s = store_review.slot(db, item_id, slot)
        if s is None:
            raise RealcalError(f"no review slot {item_id}/{slot}")
        if s["decided_by"] is not None:
            raise RealcalError("this slot has already been decided")
        if s["lease_user"] != user:
            raise RealcalError("this item is not leased to you (the lease may have expired and gone to "
                               "someone else); take the next item")
        corrected_id = None
        note = None
        if decision == "fix":
            image_id = _item(db, item_id)["image_id"]
            k, base = _fix_base(db, image_id, keypoints, person_id)
            if _same_pose(k, poses.as_keypoints(base["keypoints"])):
                # Nothing was moved: the reviewer's judgement is that the label is right. A
                # ``corrected`` copy identical to the label would only double the person.
                decision, note = "accept", FIX_UNCHANGED_NOTE
            else:
                corrected_id = _store_fix(db, image_id, k, base)
        elapsed = max(0.0, now - shown_at)
        row = {"item_id": item_id, "slot": slot, "user": user, "decision": decision,
               "reasons": list(reasons), "shown_at": shown_at, "decided_at": now,
               "active_s": min(elapsed, idle_cap_s), "idle": elapsed > idle_cap_s,
               "corrected_person_id": corrected_id}
        decision_id = store_review.insert_decision(db, row)
        store_review.mark_decided(db, item_id, slot, user)
        state = _settle(db, item_id)
        store_review.audit(db, user, "decide", item_id, slot, {**row, "decision_id": decision_id, "state": state,
                                                               **({"note": note} if note else {})})
    return {"decision_id": decision_id, "state": state, **row, **({"note": note} if note else {})}


FIX_UNCHANGED_NOTE = "the fix changed no joint, so it was stored as a plain accept"
SAME_POSE_TOLERANCE_PX = 0.5


def _same_pose(a: np.ndarray, b: np.ndarray, tol: float = SAME_POSE_TOLERANCE_PX) -> bool:
    """Whether two keypoint arrays are one pose: the same visibility flags and, for labelled
    joints, positions within ``tol`` pixels (a click that lands where the joint already was)."""
    if not np.array_equal(a[:, 2], b[:, 2]):
        return False
    labelled = a[:, 2] > 0
    return bool(np.all(np.abs(a[labelled, :2] - b[labelled, :2]) <= tol))


def _fix_base(db, image_id: int, keypoints, person_id: int | None) -> tuple[np.ndarray, dict]:
    """The checked corrected keypoints and the person they correct."""
    if keypoints is None:
        raise RealcalError("a fix needs the corrected keypoints")
    k = poses.as_keypoints(np.asarray(keypoints, dtype=float))
    if not np.isfinite(k).all():
        raise RealcalError("corrected keypoints must be finite")
    people = store_images.persons_for_images(db, [image_id], ["conditioning", "corrected"])[image_id]
    base = next((p for p in people if p["id"] == person_id), people[0] if people else None)
    if base is None:
        raise RealcalError("this image has no person to correct")
    return k, base


def _store_fix(db, image_id: int, k: np.ndarray, base: dict) -> int:
    bbox = poses.bbox_from_points(k, pad=0.1) or (base["bbox_x"], base["bbox_y"], base["bbox_w"], base["bbox_h"])
    return store_images.insert_person(db, {
        "image_id": image_id, "batch_id": base["batch_id"], "source": "corrected",
        "keypoints": [round(float(v), 3) for v in k.reshape(-1)], "extra": base.get("extra"),
        "bbox_x": bbox[0], "bbox_y": bbox[1], "bbox_w": bbox[2], "bbox_h": bbox[3],
        "area": poses.bbox_area_scale(bbox), "area_source": "bbox", "num_keypoints": poses.num_labelled(k),
        "iscrowd": 0, "source_ann_id": f"corrects:{base['id']}"})


def undo(db, user: str, now: float | None = None) -> dict[str, Any] | None:
    """Take back the user's last live decision; the slot returns to them, leased."""
    now = time.time() if now is None else now
    with write_transaction(db):
        mine = store_review.live_decisions(db, user_name=user)
        if not mine:
            return None
        d = mine[-1]
        it = _item(db, d["item_id"])
        if it["resolved_by"]:
            raise RealcalError("an admin has settled this item; it can no longer be undone")
        store_review.mark_undone(db, d["id"])
        if d["corrected_person_id"]:
            store_images.delete_person(db, d["corrected_person_id"])
        store_review.undecide(db, d["item_id"], d["slot"], user, now + LEASE_S)
        state = _settle(db, d["item_id"])
        store_review.audit(db, user, "undo", d["item_id"], d["slot"], {"decision_id": d["id"], "state": state})
    return d


def skip(db, user: str, item_id: int, slot: int) -> None:
    with write_transaction(db):
        store_review.release_lease(db, item_id, slot, user)
        store_review.audit(db, user, "skip", item_id, slot)


POLICY_PREFIX = "policy:"


def auto_decide(db, run_id: int, policy: str, accept: Callable[[int], bool], *,
                reason: str | None = None, now: float | None = None) -> dict[str, int]:
    """Decide every open, undecided slot of a curation run's queued images by a machine policy
    (``accept(image_id) -> bool``), through the same decisions table as people: each decision is
    stored under the user ``policy:<policy>`` with no reviewer time, audited, and settled. Honeypots
    are left alone (they exist to test people). Review statistics count people only."""
    now = time.time() if now is None else now
    who = POLICY_PREFIX + policy
    counts = {"accepted": 0, "rejected": 0}
    with write_transaction(db):
        for it in store_review.items_for_run(db, run_id, honeypot=False):
            if it["state"] != "open":
                continue
            decision = "accept" if accept(it["image_id"]) else "reject"
            for s in store_review.open_slots(db, it["id"]):
                row = {"item_id": it["id"], "slot": s["slot"], "user": who, "decision": decision,
                       "reasons": [] if decision == "accept" or not reason else [reason],
                       "shown_at": now, "decided_at": now, "active_s": 0.0, "idle": False,
                       "corrected_person_id": None}
                decision_id = store_review.insert_decision(db, row)
                store_review.mark_decided(db, it["id"], s["slot"], who)
                store_review.audit(db, who, "auto." + decision, it["id"], s["slot"], {"decision_id": decision_id})
            _settle(db, it["id"])
        for it in store_review.items_for_run(db, run_id, honeypot=False):
            if it["state"] in ("accepted", "rejected"):
                counts[it["state"]] += 1
    return counts


def resolve_conflict(db, admin: str, item_id: int, decision: str) -> None:
    if decision not in ("accept", "reject"):
        raise RealcalError("a conflict is settled as accept or reject")
    with write_transaction(db):
        it = store_review.item(db, item_id)
        if it is None or it["state"] != "conflict":
            raise RealcalError(f"item {item_id} is not a conflict")
        store_review.set_state(db, item_id, "accepted" if decision == "accept" else "rejected", admin)
        store_review.audit(db, admin, "resolve", item_id, None, {"decision": decision})


# ----------------------------------------------------------------------------- stats

def cohen_kappa(pairs: list[tuple[str, str]]) -> float | None:
    if not pairs:
        return None
    labels = sorted({x for p in pairs for x in p})
    n = len(pairs)
    po = sum(1 for a, b in pairs if a == b) / n
    pe = sum((sum(1 for a, _ in pairs if a == lab) / n) * (sum(1 for _, b in pairs if b == lab) / n)
             for lab in labels)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def stats(db) -> dict[str, Any]:
    """Reviewer statistics: people only (decisions made by a machine policy are counted apart)."""
    all_rows = store_review.decision_table(db)
    rows = [r for r in all_rows if not str(r["user"]).startswith(POLICY_PREFIX)]
    policy = len(all_rows) - len(rows)
    if not rows:
        return {"decisions": 0, **({"policy_decisions": policy} if policy else {})}
    out: dict[str, Any] = {"decisions": len(rows), **({"policy_decisions": policy} if policy else {})}
    per_user: dict[str, dict] = {}
    for r in rows:
        u = per_user.setdefault(r["user"], {"decisions": 0, "active_s": 0.0, "accepted": 0, "idle": 0,
                                            "first": r["decided_at"], "last": r["decided_at"],
                                            "honeypots": 0, "honeypots_caught": 0})
        u["decisions"] += 1
        u["active_s"] += r["active_s"]
        u["idle"] += r["idle"]
        u["accepted"] += r["decision"] in ("accept", "fix")
        u["first"], u["last"] = min(u["first"], r["decided_at"]), max(u["last"], r["decided_at"])
        if r["honeypot"]:
            u["honeypots"] += 1
            u["honeypots_caught"] += r["decision"] == "reject"
    for u in per_user.values():
        hours = max(u["active_s"], 1.0) / 3600
        u["decisions_per_active_hour"] = round(u["decisions"] / hours, 1)
        u["seconds_per_decision"] = round(u["active_s"] / u["decisions"], 2)
        u["seconds_per_accepted"] = round(u["active_s"] / u["accepted"], 2) if u["accepted"] else None
        u["honeypot_accuracy"] = (round(u["honeypots_caught"] / u["honeypots"], 3) if u["honeypots"] else None)
    out["per_reviewer"] = per_user
    real = [r for r in rows if not r["honeypot"]]
    by_gen: dict[str, list] = {}
    for r in real:
        by_gen.setdefault(r["generator"] or "unknown", []).append(r["decision"] in ("accept", "fix"))
    out["acceptance_by_generator"] = {g: round(float(np.mean(v)), 3) for g, v in by_gen.items()}
    by_batch: dict[str, list] = {}
    for r in real:
        by_batch.setdefault(str(r["batch_id"]), []).append(r["decision"] in ("accept", "fix"))
    out["acceptance_by_batch"] = {b: round(float(np.mean(v)), 3) for b, v in by_batch.items()}
    by_axis: dict[str, dict[str, list]] = {}
    for r in real:
        for axis, value in (r["lineage"].get("prompt_axes") or {}).items():
            by_axis.setdefault(axis, {}).setdefault(value, []).append(r["decision"] in ("accept", "fix"))
    out["acceptance_by_prompt_axis"] = {a: {v: round(float(np.mean(x)), 3) for v, x in vals.items()}
                                        for a, vals in by_axis.items()}
    reasons: dict[str, int] = {}
    for r in real:
        for t in r["reasons"]:
            reasons[t] = reasons.get(t, 0) + 1
    out["reject_reasons"] = reasons
    by_item: dict[int, list] = {}
    for r in real:
        by_item.setdefault(r["item_id"], []).append("accept" if r["decision"] in ("accept", "fix") else "reject")
    pairs = [(v[0], v[1]) for v in by_item.values() if len(v) == 2]
    out["overlap_pairs"] = len(pairs)
    out["cohen_kappa"] = cohen_kappa(pairs)
    # kappa alone misleads on small or one-sided samples (60% raw agreement can be kappa 0.0)
    out["raw_agreement"] = round(sum(a == b for a, b in pairs) / len(pairs), 3) if pairs else None
    total_active = sum(r["active_s"] for r in real)
    accepted = sum(1 for r in real if r["decision"] in ("accept", "fix"))
    out["seconds_per_accepted_image"] = round(total_active / accepted, 2) if accepted else None
    return out


HONEYPOT_FIELDS = ("honeypots", "honeypots_caught", "honeypot_accuracy")


def stats_for(db, viewer: dict) -> dict[str, Any]:
    """Review statistics as ``viewer`` may see them: everything for an admin; for an annotator only
    their own figures, without honeypot counts (those would tell which items were honeypots)."""
    if viewer.get("role") == "admin":
        return {**stats(db), "scope": "all"}
    full = stats(db)
    mine = (full.get("per_reviewer") or {}).get(viewer.get("name"))
    if not mine:
        return {"decisions": 0, "scope": "own"}
    own = {k: v for k, v in mine.items() if k not in HONEYPOT_FIELDS}
    return {"decisions": own["decisions"], "scope": "own", "per_reviewer": {viewer["name"]: own}}
