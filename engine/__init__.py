"""realcal engine: everything that computes. Never imports streamlit."""
__version__ = "0.1.0"

from engine import env as _env  # noqa: E402

_env.configure()  # Ultralytics/Hugging Face settings before any entry point imports them

import store as _store  # noqa: E402,F401  - imports sqlite_utils without pandas (store.fastimport)
