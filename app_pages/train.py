"""Train: not built yet (the page says so plainly)."""
import streamlit as st

from ui.common import workspace

workspace()
st.title("Train")
st.warning("Not built yet: this page (starting training and experiments from the browser) is planned. "
           "Training and experiments run from the command line today: `realcal manifest build`, "
           "`realcal train`, `realcal experiment run experiments/example_tiny.yaml`; results appear on "
           "the Results page.")
st.markdown("Ultralytics YOLO-pose on real-only, synthetic-only and mixed data with seeds and ablations, evaluated on the real test split.")
