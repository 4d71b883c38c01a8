"""Review: not built yet (the page says so plainly)."""
import streamlit as st

from ui.common import workspace

workspace()
st.title("Review")
st.warning("Not built yet: this capability is planned but not available in this version.")
st.markdown("The annotators' queue: ranked synthetic images with skeleton overlays, accept/reject with hotkeys, fixes by clicking on the image, leases, accounts and timing of every decision.")
