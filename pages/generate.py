"""Generate: not built yet (the page says so plainly)."""
import streamlit as st

from ui.common import workspace

workspace()
st.title("Generate")
st.warning("Not built yet: this capability is planned but not available in this version.")
st.markdown("Pose-conditioned synthetic people: Stable Diffusion + ControlNet-OpenPose where weights and a GPU exist, and an offline copy-paste generator that needs no diffusion weights. The conditioning pose is the free label.")
