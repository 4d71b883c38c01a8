"""realcal's storage layer: the only package that contains SQL.

Everything goes through :func:`store.db.open_db`, which sets WAL, a busy timeout,
foreign keys, and applies the named migrations of every feature area.
"""

from store.fastimport import import_sqlite_utils as _import_sqlite_utils  # noqa: E402

_import_sqlite_utils()  # without pandas: most of every command's start-up time otherwise (store.fastimport)
