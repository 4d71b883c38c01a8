"""Import sqlite_utils without pandas.

sqlite_utils imports pandas (and with it pyarrow) whenever it is installed, only to map
``pandas.Timestamp`` to a column type. realcal never stores pandas objects, and that import is most of
the start-up time of every command (``realcal status`` spent ~0.3 s of ~0.5 s in it), so sqlite_utils is
imported with pandas hidden, unless something already imported pandas (then nothing changes). numpy
stays visible: sqlite_utils maps numpy scalars to column types, which realcal does store.
"""
from __future__ import annotations

import sys


def import_sqlite_utils() -> None:
    if "sqlite_utils.db" in sys.modules or "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # type: ignore[assignment]   # `import pandas` raises ImportError meanwhile
    try:
        import sqlite_utils  # noqa: F401
    finally:
        if sys.modules.get("pandas", 0) is None:
            del sys.modules["pandas"]
