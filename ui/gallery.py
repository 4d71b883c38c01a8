"""A thumbnail grid in one component: a click on a thumbnail opens it, the box in its corner selects it.

One component for the whole page (not one per image), so a page of 24 thumbnails is one element; the
thumbnails are the pre-made JPEGs (see ``ui.common.overlay_thumbnail``) sent as data URIs."""
from __future__ import annotations

import base64
from typing import Any

import streamlit as st

CSS = """
.gallery { display: grid; gap: 14px; }
.tile { position: relative; margin: 0; border: 2px solid transparent; border-radius: 6px; padding: 2px; }
.tile.selected { border-color: var(--st-primary-color, #ff4b4b); }
.tile img { width: 100%; height: auto; display: block; cursor: zoom-in; border-radius: 4px; }
.tile input { position: absolute; top: 8px; left: 8px; width: 20px; height: 20px; cursor: pointer; }
.tile figcaption { font-size: 0.8rem; opacity: 0.8; margin-top: 4px; overflow-wrap: anywhere; }
"""

JS = """
export default function(component) {
  const { data, setTriggerValue, parentElement } = component;
  let root = parentElement.querySelector('.gallery');
  if (!root) {
    root = document.createElement('div');
    root.className = 'gallery';
    parentElement.appendChild(root);
  }
  root.style.gridTemplateColumns = `repeat(${data.cols}, minmax(0, 1fr))`;
  root.replaceChildren();
  for (const it of data.items) {
    const fig = document.createElement('figure');
    fig.className = 'tile' + (it.selected ? ' selected' : '');
    fig.dataset.id = it.id;
    const img = document.createElement('img');
    img.src = it.src;
    img.alt = it.alt;
    img.title = 'Open ' + it.alt;
    img.onclick = () => setTriggerValue('opened', it.id);
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = it.selected;
    box.setAttribute('aria-label', 'select ' + it.alt);
    box.onclick = (e) => {
      e.stopPropagation();
      fig.classList.toggle('selected', box.checked);
      setTriggerValue('toggled', it.id);
    };
    const cap = document.createElement('figcaption');
    cap.textContent = it.caption;
    fig.append(img, box, cap);
    root.appendChild(fig);
  }
}
"""

_component = st.components.v2.component("realcal_gallery", html="", css=CSS, js=JS)


def gallery(items: list[dict[str, Any]], cols: int, key: str):
    """``items``: id, jpeg (bytes), alt, caption, selected. Returns the component result: ``opened`` (the id
    clicked this run, else None) and ``toggled`` (the id whose box was clicked this run, else None)."""
    data = {"cols": int(cols), "items": [
        {"id": int(it["id"]), "alt": it["alt"], "caption": it["caption"], "selected": bool(it["selected"]),
         "src": "data:image/jpeg;base64," + base64.b64encode(it["jpeg"]).decode()} for it in items]}
    return _component(data=data, key=key, on_opened_change=lambda: None, on_toggled_change=lambda: None)
