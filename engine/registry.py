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


ENTRY_POINT_GROUP = "realcal.stages"
_PLUGIN_ERRORS: dict[str, str] = {}
_plugins_loaded = False


def load_plugins(force: bool = False) -> dict[str, str]:
    """Curation stages from installed packages: entry points in the ``realcal.stages`` group,
    ``name = "package.module:StageClass"``. A plugin that fails to load is reported, not fatal."""
    global _plugins_loaded
    if _plugins_loaded and not force:
        return dict(_PLUGIN_ERRORS)
    from importlib.metadata import entry_points

    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
        except Exception as exc:  # a broken third-party package must not break realcal
            _PLUGIN_ERRORS[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
            continue
        if isinstance(obj, type) and ep.name not in _REGISTRY.get("stage", {}):
            register("stage", ep.name)(obj)
    return dict(_PLUGIN_ERRORS)


def _load(kind: str) -> None:
    for module in _KIND_MODULES.get(kind, []):
        importlib.import_module(module)
    if kind == "stage":
        load_plugins()


def names(kind: str) -> list[str]:
    _load(kind)
    return sorted(_REGISTRY.get(kind, {}))


def get(kind: str, name: str) -> type:
    _load(kind)
    options = _REGISTRY.get(kind, {})
    if name not in options:
        broken = f" (plugins that failed to load: {_PLUGIN_ERRORS})" if kind == "stage" and _PLUGIN_ERRORS else ""
        raise RealcalError(f"unknown {kind} {name!r}; valid names: {', '.join(sorted(options)) or 'none'}{broken}")
    return options[name]


def build(kind: str, name: str, params: dict[str, Any] | None = None):
    return get(kind, name)(**(params or {}))
