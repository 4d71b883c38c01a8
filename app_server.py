"""The realcal app server: the Streamlit app (``app.py``) with its login page (``ui/auth_routes.py``).

``realcal app`` runs ``streamlit run app_server.py``; Streamlit finds the ``st.App`` below and
serves the script with the extra route. The login page sets an httpOnly session cookie, which a
Streamlit script cannot do.
"""
from pathlib import Path

import streamlit as st

from ui.auth_routes import routes

app = st.App(Path(__file__).resolve().with_name("app.py"), routes=routes())
