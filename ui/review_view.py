"""The review item image: downscaled once, skeleton overlays, cached per content and toggles."""
from __future__ import annotations

import numpy as np
import streamlit as st
from PIL import Image

from engine import poses

MAX_SIDE = 720


def _agreement_colour(a: float | None) -> tuple[int, int, int]:
    if a is None:
        return (150, 150, 150)
    if a >= 0.75:
        return (40, 200, 80)
    if a >= 0.5:
        return (245, 180, 20)
    return (230, 40, 40)


@st.cache_data(max_entries=256, show_spinner=False)
def render_item(path: str, label_kpts: tuple, detected_kpts: tuple, agreement: tuple | None,
                selected_joint: int | None) -> tuple[np.ndarray, float]:
    """(RGB array with its longer side MAX_SIDE px (enlarging at most 3x), scale from image to
    array pixels)."""
    with Image.open(path) as im:
        rgb = im.convert("RGB")
        scale = min(3.0, MAX_SIDE / max(rgb.size))  # small images are enlarged (up to 3x) for review
        if scale != 1:
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), Image.Resampling.BILINEAR)
    out = rgb
    if detected_kpts:
        det = [np.asarray(k, float) for k in detected_kpts]
        for k in det:
            k[:, 2] = np.where(k[:, 2] >= 0.3, 2, 0)
        out = poses.draw_skeleton(out, det, scale=scale, dashed=True, line_width=2, radius=3)
    if label_kpts:
        colours = None
        if agreement:
            colours = [[_agreement_colour(a[j] if a else None) for j in range(17)] for a in agreement]
        out = poses.draw_skeleton(out, [np.asarray(k, float) for k in label_kpts], scale=scale,
                                  joint_colours=colours, line_width=3, radius=5)
        if selected_joint is not None:
            from PIL import ImageDraw

            k = np.asarray(label_kpts[0], float)
            if k[selected_joint, 2] > 0:
                x, y = k[selected_joint, :2] * scale
                ImageDraw.Draw(out).ellipse([x - 10, y - 10, x + 10, y + 10], outline=(255, 255, 255), width=3)
    return np.asarray(out), scale
