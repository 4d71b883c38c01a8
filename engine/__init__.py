"""realcal engine: everything that computes. Never imports streamlit."""
__version__ = "0.1.0"

from engine import env as _env  # noqa: E402

_env.configure()  # Ultralytics/Hugging Face settings before any entry point imports them

from engine.fastimport import import_sqlite_utils as _import_sqlite_utils  # noqa: E402

_import_sqlite_utils()  # without pandas: most of every command's start-up time otherwise
