"""Workspace access, thumbnails with skeleton overlays, the job badge and live job progress."""
from __future__ import annotations

import io
import os

import numpy as np
import streamlit as st
from PIL import Image

from engine import media, poses
from engine.errors import WorkspaceError
from engine.workspace import Workspace

MACHINE_NOTE = "dashed skeletons are machine labels (teacher predictions), not ground truth"


def workspace(admin_only: bool = True, check_user: bool = True) -> Workspace:
    """The workspace the app was started on (never chosen by URL or parameter), after checking
    the signed-in user's role; stops the page with a clear message otherwise."""
    root = os.environ.get("REALCAL_WORKSPACE", "")
    try:
        ws = Workspace.open(root)
    except WorkspaceError as exc:
        st.error(f"{exc}")
        st.info("Start the app with `realcal -w DIR app`, or `make app` for the demo workspace.")
        st.stop()
    if check_user:
        from ui.auth import page_user

        page_user(ws, admin_only=admin_only)
    return ws


@st.cache_data(max_entries=2000, show_spinner=False)
def overlay_thumbnail(root: str, sha256: str, width: int, height: int,
                      persons_key: tuple) -> bytes:
    """The stored thumbnail with skeletons drawn: solid = labels, dashed = machine labels."""
    thumb = Image.open(media.thumb_path(root, sha256))
    return skeleton_jpeg(thumb, persons_key, thumb.width / float(width), line_width=2, quality=85)


def skeleton_jpeg(image: Image.Image, persons_key: tuple, scale: float, line_width: int = 2,
                  quality: int = 85) -> bytes:
    """``image`` (already scaled by ``scale`` from the original) with the skeletons of ``persons_key`` drawn,
    as JPEG bytes: solid = labels, dashed = machine labels (``predicted``)."""
    labels = [np.asarray(k, dtype=float).reshape(17, 3) for src, k in persons_key if src != "predicted"]
    machine = [np.asarray(k, dtype=float).reshape(17, 3) for src, k in persons_key if src == "predicted"]
    out = image
    if labels:
        out = poses.draw_skeleton(out, labels, scale=scale, line_width=line_width, radius=line_width)
    if machine:
        out = poses.draw_skeleton(out, machine, scale=scale, line_width=line_width, radius=line_width, dashed=True)
    buf = io.BytesIO()
    out.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def persons_key(persons: list[dict]) -> tuple:
    return tuple((p["source"], tuple(p["keypoints"])) for p in persons if not p["iscrowd"])


def job_badge(ws: Workspace) -> None:
    from store import jobs as store_jobs

    with ws.connect() as db:
        counts = store_jobs.counts(db)
    active = counts["running"] + counts["queued"]
    if active:
        st.sidebar.info(f"Jobs: {counts['running']} running, {counts['queued']} queued")
    elif counts["failed"]:
        st.sidebar.warning(f"Jobs: {counts['failed']} failed (see Jobs)")
    else:
        st.sidebar.caption("Jobs: idle")


ACTIVE = ("queued", "running")
_ENDED_KEY = "realcal_jobs_ended"     # said once, by the page's next run


def job_progress(ws: Workspace, kinds: tuple[str, ...]) -> None:
    """Live progress of the queued and running jobs of these kinds (every 2 s); when one of them ends the
    whole page runs again, so what the job made (a curation run, a trained model) shows without a reload.
    Shows nothing (and does not poll) while no such job is active."""
    from store import jobs as store_jobs

    for text in st.session_state.pop(_ENDED_KEY, []):
        st.toast(text)
    with ws.connect() as db:
        active = [j for j in store_jobs.list_jobs(db, limit=50) if j["kind"] in kinds and j["status"] in ACTIVE]
    if active:
        _live_jobs(str(ws.root), tuple(kinds), tuple(j["id"] for j in active))


@st.fragment(run_every=2)
def _live_jobs(root: str, kinds: tuple[str, ...], watched: tuple[int, ...]) -> None:
    from store import jobs as store_jobs

    with Workspace.open(root).connect() as db:
        rows = [j for j in store_jobs.list_jobs(db, limit=50) if j["kind"] in kinds]
    by_id = {j["id"]: j for j in rows}
    for j in rows:
        if j["status"] in ACTIVE:
            fraction = min(1.0, j["progress"] / j["total"]) if j["total"] else 0.0
            st.progress(fraction, text=f"job {j['id']} ({j['kind']}): {j['message'] or j['status']}")
    ended = [by_id[i] for i in watched if i in by_id and by_id[i]["status"] not in ACTIVE]
    if ended:
        st.session_state[_ENDED_KEY] = [f"Job {j['id']} ({j['kind']}) {j['status']}." for j in ended]
        st.rerun(scope="app")         # the page shows what the job made
