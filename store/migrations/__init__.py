"""Named migrations, one module per feature area.

Each module in this package defines ``migrations = sqlite_utils.migrations.Migrations(name)``
and an integer ``ORDER`` (lower runs first). A feature adds its own module here; it never
edits another's. Applied migrations are recorded in ``_sqlite_migrations``, so re-applying
is a no-op.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


def modules() -> list[ModuleType]:
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if not hasattr(module, "migrations"):
            continue
        found.append(module)
    return sorted(found, key=lambda m: (getattr(m, "ORDER", 100), m.__name__))
