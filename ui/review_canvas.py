"""The review canvas: a ``st.components.v2`` component (inline HTML/CSS/JS shipped beside this file).

It shows one leased item large (fitted to the window's height, smoothly scaled, zoom and pan),
the label skeleton with teacher agreement colours and the teacher's skeleton dashed, and handles
the hotkeys on the whole page. Joints are dragged to fix them. Every key or button becomes an
action in the component's ``action`` trigger; :func:`take_actions` turns the actions Python has
not stored yet into decisions through ``engine.review``.
"""
from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from engine import poses, review
from engine.errors import RealcalError

HERE = Path(__file__).resolve().parent
MAX_SIDE = 1600          # larger images are sent downscaled; smaller ones as they are (the browser scales them)


# The stylesheet travels inside the script, which puts it in the component's own element: a style
# given as ``css=`` was seen dropped from the shadow root after some reruns, leaving the canvas unstyled.
_component = st.components.v2.component(
    "realcal_review_canvas",
    js=f"const STYLE = {json.dumps((HERE / 'review_canvas.css').read_text(encoding='utf-8'))};\n"
       + (HERE / "review_canvas.js").read_text(encoding="utf-8"),
)


@st.cache_data(max_entries=512, show_spinner=False)
def image_src(path: str) -> str:
    """The image as a data URL: the file itself when it is small enough, else a JPEG whose longer
    side is ``MAX_SIDE`` (never enlarged: small images are scaled smoothly in the browser)."""
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        fmt = (im.format or "").upper()
        if max(im.size) <= MAX_SIDE and fmt in ("JPEG", "PNG", "WEBP", "GIF"):
            return f"data:image/{fmt.lower()};base64,{base64.b64encode(data).decode()}"
        rgb = im.convert("RGB")
        rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        rgb.save(buf, "JPEG", quality=90)
    return f"data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}"


def review_canvas(data: dict[str, Any], *, key: str, on_action: Callable[[], None]) -> Any:
    """Mount the canvas with ``data`` (see ``app_pages/review.py``); ``on_action`` runs when the
    browser sends actions (read them with :func:`pending_actions`)."""
    payload = {"skeleton": [list(e) for e in poses.SKELETON], "names": list(poses.KEYPOINT_NAMES), **data}
    return _component(key=key, data=payload, on_action_change=on_action, height="content")


def pending_actions(key: str, seen: dict[str, Any]) -> list[dict[str, Any]]:
    """The actions of the component ``key``'s latest trigger that are newer than ``seen``
    (``{"session": ..., "ack": n}``, updated in place): each browser session numbers its actions
    1, 2, 3...; a resent trigger repeats the ones not yet acknowledged, which are skipped here."""
    value = st.session_state.get(key)
    trigger = value.get("action") if value is not None and hasattr(value, "get") else None
    if not isinstance(trigger, dict) or not isinstance(trigger.get("actions"), list):
        return []
    session = str(trigger.get("session", ""))
    if seen.get("session") != session:
        seen.update(session=session, ack=0)
    fresh = [a for a in trigger["actions"] if isinstance(a, dict) and isinstance(a.get("seq"), int)
             and a["seq"] > seen["ack"]]
    return sorted(fresh, key=lambda a: a["seq"])


def _store_action(db, user_name: str, a: dict[str, Any]) -> str | None:
    """Store one canvas action through ``engine.review``; returns a note for the reviewer, if any."""
    kind = a.get("action")
    if kind == "undo":
        d = review.undo(db, user_name)
        return f"Undid {d['decision']} on item {d['item_id']}." if d else "Nothing to undo."
    item_id, slot = int(a["item_id"]), int(a["slot"])
    if kind == "skip":
        review.skip(db, user_name, item_id, slot)
        return None
    if kind not in ("accept", "reject", "fix"):
        raise RealcalError(f"unknown review action {kind!r}")
    elapsed = min(max(float(a.get("elapsed_ms") or 0) / 1000, 0.0), 86400.0)   # measured in the browser
    r = review.decide(db, user_name, item_id, slot, kind, shown_at=time.time() - elapsed,
                      reasons=[str(x) for x in a.get("reasons") or []] if kind == "reject" else [],
                      keypoints=np.asarray(a["keypoints"], float) if kind == "fix" else None,
                      person_id=a.get("person_id") if kind == "fix" else None)
    return r.get("note")


def store_actions(db, user_name: str, actions: list[dict[str, Any]], seen: dict[str, Any]) -> dict[str, str | None]:
    """Store the canvas's new actions in order (``seen["ack"]`` advances past each, stored or
    refused) and return ``{"msg": errors, "note": notes}`` for the canvas to show."""
    msgs, notes = [], []
    for a in actions:
        try:
            note = _store_action(db, user_name, a)
            if note:
                notes.append(note)
        except RealcalError as exc:
            msgs.append(f"{str(exc).rstrip('.')}.")
        except (ValueError, KeyError, TypeError) as exc:
            msgs.append(f"The browser sent an action that could not be read ({exc!r}); nothing was stored.")
        seen["ack"] = a["seq"]
    return {"msg": " ".join(msgs) or None, "note": " ".join(notes) or None}
