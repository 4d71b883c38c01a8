"""realcal engine: everything that computes. Never imports streamlit."""
__version__ = "0.1.0"

from engine import env as _env  # noqa: E402

_env.configure()  # Ultralytics/Hugging Face settings before any entry point imports them
