"""Train: not built yet (the page says so plainly)."""
import streamlit as st

from ui.common import workspace

workspace()
st.title("Train")
st.warning("Not built yet: experiments and this page are planned but not available in this version. "
           "Training itself runs from the command line: `realcal manifest build` then `realcal train`.")
st.markdown("Ultralytics YOLO-pose on real-only, synthetic-only and mixed data with seeds and ablations, evaluated on the real test split.")
