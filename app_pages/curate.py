"""Curate: not built yet (the page says so plainly)."""
import streamlit as st

from ui.common import workspace

workspace()
st.title("Curate")
st.warning("Not built yet: this capability is planned but not available in this version.")
st.markdown("Multi-stage filters calibrated on the real anchors (quality, realism, near-duplicates, CLIP alignment where weights exist, pose consistency by OKS) and selection by model uncertainty and diversity.")
