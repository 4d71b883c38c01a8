"""Importers and exporters, one module per format, each registered in the component registry.

An import format is ``parse(path, **options) -> ParsedDataset`` registered as
``@register("import_format", NAME)``; an export format is ``export(ws, out, *, splits, sources, kinds,
progress, synthetic) -> summary`` registered as ``@register("export_format", NAME)``; it writes the
selection of :mod:`engine.io.exportable` (no honeypot or rejected image, synthetic images only from
the ``synthetic`` pool), and ``realcal export`` refuses a format without the ``synthetic`` parameter.
Third-party formats arrive through the ``realcal.import_formats`` / ``realcal.export_formats``
entry-point groups.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from engine import registry


def parse(fmt: str, path: str | Path, **options):
    """Parse a dataset in ``fmt`` without touching any workspace."""
    import inspect

    from engine.errors import DatasetError

    fn = registry.get("import_format", fmt)
    accepted = inspect.signature(fn).parameters
    extra = [k for k, v in options.items() if v is not None and k not in accepted]
    if extra:
        raise DatasetError(f"the {fmt} format takes no {', '.join(extra)} option")
    return fn(path, **{k: v for k, v in options.items() if k in accepted})


def exporter(fmt: str) -> Callable:
    return registry.get("export_format", fmt)


def import_formats() -> list[str]:
    return registry.names("import_format")


def export_formats() -> list[str]:
    return registry.names("export_format")
