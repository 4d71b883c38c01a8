"""realcal app: page config, navigation over app_pages/, the sidebar job badge.

The pages live in ``app_pages/``, not ``pages/``: Streamlit treats a ``pages/`` folder beside the
entry script as a legacy multipage app until the entry script has run once, so on a fresh server
a deep link such as ``/jobs`` would run that page alone, bypassing this file (its navigation and,
later, its login gate).

Start it with `realcal -w DIR app` (or `make app` for the demo workspace). No model or heavy
work runs here: pages insert job rows and a worker process runs them.
"""
import streamlit as st

st.set_page_config(page_title="realcal", page_icon=":material/accessibility_new:", layout="wide")

from engine import logs  # noqa: E402

logs.configure("INFO")   # the server console: one format with the CLI and the worker

from ui.auth import current_user  # noqa: E402
from ui.common import job_badge, workspace  # noqa: E402

ws = workspace(check_user=False)
user = current_user(ws)
if user is None:
    st.stop()

review_page = st.Page("app_pages/review.py", title="Review", icon=":material/fact_check:",
                      default=user["role"] == "annotator")
if user["role"] == "annotator":
    # Annotators get the Review page only: any other URL falls back to it.
    st.navigation([review_page]).run()
    st.stop()

pages = {
    "Data": [st.Page("app_pages/data.py", title="Data", icon=":material/photo_library:", default=True)],
    "Engine": [
        st.Page("app_pages/generate.py", title="Generate", icon=":material/auto_awesome:"),
        st.Page("app_pages/curate.py", title="Curate", icon=":material/filter_alt:"),
        review_page,
        st.Page("app_pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("app_pages/results.py", title="Results", icon=":material/insights:"),
    ],
    "System": [
        st.Page("app_pages/jobs.py", title="Jobs", icon=":material/pending_actions:"),
        st.Page("app_pages/settings.py", title="Settings", icon=":material/settings:"),
    ],
}
page = st.navigation(pages)
st.sidebar.caption(f"Workspace: `{ws.root}`")
if user["single_user"]:
    st.sidebar.caption("Single-user mode (loopback only)")
job_badge(ws)
page.run()
