"""Page-wide hotkeys as a tiny ``st.components.v2`` component (no iframe, nothing drawn).

Streamlit's own button shortcuts are ignored while a checkbox or other control has focus (in
the review grid, A/X did nothing right after ticking a thumbnail). This listens on the window in
the capture phase, so a key works wherever focus is, except while typing in a text field.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

JS = """
const STATE = new WeakMap();
function typing(t) {
  if (!t || !t.tagName) return false;
  if (t.isContentEditable || t.tagName === "TEXTAREA") return true;
  return t.tagName === "INPUT" &&
    !["checkbox", "radio", "button", "submit", "reset", "range", "color", "file", "image"].includes(t.type);
}
export default function ({ parentElement, data, setTriggerValue }) {
  let s = STATE.get(parentElement);
  if (!s) {
    s = { n: 0, keys: [] };
    s.onKey = (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || e.shiftKey) return;
      if (typing(e.composedPath ? e.composedPath()[0] : e.target)) return;
      const k = e.key.length === 1 ? e.key.toLowerCase() : e.key;
      if (!s.keys.includes(k)) return;
      e.preventDefault();
      e.stopPropagation();
      s.n += 1;
      s.send("key", { key: k, n: s.n });
    };
    window.addEventListener("keydown", s.onKey, true);
    s.cleanup = () => window.removeEventListener("keydown", s.onKey, true);
    STATE.set(parentElement, s);
  }
  s.keys = (data && data.keys) || [];
  s.send = setTriggerValue;
  return s.cleanup;
}
"""

_component = st.components.v2.component("realcal_hotkeys", js=JS)


def hotkeys(key: str, keys: Sequence[str], on_press: Callable[[], None]) -> None:
    """Listen for the single-letter ``keys`` anywhere on the page; ``on_press`` runs (as a
    callback, before the script) when one is pressed; :func:`pressed` tells which."""
    _component(key=key, data={"keys": [k.lower() for k in keys]}, on_key_change=on_press, height="content")


def pressed(key: str) -> str | None:
    """The key whose press triggered this run of the hotkeys component ``key``, if any."""
    value = st.session_state.get(key)
    trigger = value.get("key") if value is not None and hasattr(value, "get") else None
    return str(trigger["key"]) if isinstance(trigger, dict) and "key" in trigger else None
