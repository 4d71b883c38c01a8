"""One registry of swappable components: ``{kind: {name: cls}}``.

``@register("generator", "copy_paste")`` adds a class; ``build(kind, name, params)`` constructs it
and fails at once, listing the valid names, on a typo. Modules register on import, so
``_KIND_MODULES`` names the package to import for each kind.
"""
from __future__ import annotations

import importlib
from typing import Any

from engine.errors import RealcalError

_REGISTRY: dict[str, dict[str, type]] = {}
_KIND_MODULES = {
    "generator": ["engine.generate.copy_paste", "engine.generate.controlnet"],
    "embedder": ["engine.curate.embedders"],
    "stage": ["engine.curate.quality", "engine.curate.realism", "engine.curate.duplicates",
              "engine.curate.clip_align", "engine.curate.pose_consistency"],
}


def register(kind: str, name: str):
    def add(cls):
        _REGISTRY.setdefault(kind, {})[name] = cls
        cls.registry_name = name
        return cls
    return add


def _load(kind: str) -> None:
    for module in _KIND_MODULES.get(kind, []):
        importlib.import_module(module)


def names(kind: str) -> list[str]:
    _load(kind)
    return sorted(_REGISTRY.get(kind, {}))


def get(kind: str, name: str) -> type:
    _load(kind)
    options = _REGISTRY.get(kind, {})
    if name not in options:
        raise RealcalError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(options)) or 'none'}")
    return options[name]


def build(kind: str, name: str, params: dict[str, Any] | None = None):
    return get(kind, name)(**(params or {}))
