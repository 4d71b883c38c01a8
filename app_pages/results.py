"""Results: not built yet (the page says so plainly)."""
import streamlit as st

from ui.common import workspace

workspace()
st.title("Results")
st.warning("Not built yet: this capability is planned but not available in this version.")
st.markdown("Augmentation-vs-baseline dashboards with confidence intervals and the human cost of every gain.")
