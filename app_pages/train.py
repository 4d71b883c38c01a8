"""Train: not built yet (the page says so plainly)."""
import streamlit as st

from ui.common import workspace

workspace()
st.title("Train")
st.warning("Not built yet: this capability is planned but not available in this version.")
st.markdown("Ultralytics YOLO-pose on real-only, synthetic-only and mixed data with seeds and ablations, evaluated on the real test split.")
