"""One registry for every swappable thing: ``{kind: {name: Entry}}``.

Kinds: ``generator``, ``stage`` (curation), ``embedder``, ``selector`` (review order), ``job`` (a
background job kind), ``import_format``, ``export_format`` and ``pipeline_step``. Built-in
components register themselves with a decorator when their module is imported::

    @register("generator", "copy_paste")
    class CopyPasteGenerator(Component): ...

    @register("job", "generate", title="Generate synthetic people", resumable=True)
    def run(ctx, params): ...

The registry imports a kind's built-in modules (``KINDS[kind].modules``, by name) the first time
that kind is asked for, so this module imports no feature module and features import it, never
the other way round. Third-party packages add components through entry points, one group per
kind (``realcal.generators``, ``realcal.stages``, ``realcal.embedders``, ``realcal.selectors``,
``realcal.jobs``, ``realcal.import_formats``, ``realcal.export_formats``,
``realcal.pipeline_steps``)::

    [project.entry-points."realcal.generators"]
    my_gen = "my_package.module:MyGenerator"

A plugin that fails to import or breaks the contract (a component class without a ``Config``) is
reported by :func:`plugin_errors`, never fatal. ``build(kind, name, params)`` constructs a component
from its validated ``Config``; a typo fails at once with the valid names.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from engine.errors import RealcalError


@dataclass(frozen=True)
class Kind:
    modules: tuple[str, ...]          # built-in modules that register this kind's entries on import
    group: str                        # entry-point group for plugins
    component: bool                   # entries are Component classes built from a Config
    doc: str


KINDS: dict[str, Kind] = {
    "generator": Kind(("engine.generate.copy_paste", "engine.generate.pose_warp", "engine.generate.controlnet"),
                      "realcal.generators", True, "makes synthetic images with their labels"),
    "stage": Kind(("engine.curate.quality", "engine.curate.duplicates", "engine.curate.realism",
                   "engine.curate.clip_align", "engine.curate.pose_consistency"), "realcal.stages", True,
                  "a curation filter: calibrate on real anchors, then pass/fail each synthetic image"),
    "embedder": Kind(("engine.curate.embedders",), "realcal.embedders", True,
                     "image embeddings for realism, duplicates and diversity"),
    "selector": Kind(("engine.curate.select",), "realcal.selectors", True,
                     "orders curated images for review and selection"),
    "job": Kind(("engine.pseudo_label", "engine.selftest", "engine.generate.job", "engine.curate.run",
                 "engine.curate.student", "engine.curate.failures",
                 "engine.train.train", "engine.experiment", "engine.loop"), "realcal.jobs", False,
                "a background job kind run by the worker"),
    "import_format": Kind(("engine.io.coco", "engine.io.yolo_pose", "engine.io.lsp", "engine.io.images"),
                          "realcal.import_formats", False, "parses a dataset on disk"),
    "export_format": Kind(("engine.io.coco", "engine.io.yolo_pose"), "realcal.export_formats", False,
                          "writes a workspace selection to disk"),
    "pipeline_step": Kind(("engine.pipeline_steps",), "realcal.pipeline_steps", False,
                          "one step of a pipeline file"),
}


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str
    obj: Any
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = "built-in"          # or "plugin <distribution>"


logger = logging.getLogger(__name__)
_REGISTRY: dict[str, dict[str, Entry]] = {k: {} for k in KINDS}
_LOADED: set[str] = set()
_PLUGINS_LOADED: set[str] = set()
_PLUGIN_ERRORS: dict[str, dict[str, str]] = {}


def _check_kind(kind: str) -> Kind:
    if kind not in KINDS:
        raise RealcalError(f"unknown component kind {kind!r}; kinds: {', '.join(KINDS)}")
    return KINDS[kind]


def _contract_error(kind: str, obj: Any) -> str | None:
    if not KINDS[kind].component:
        return None if callable(obj) else "not callable"
    from engine.component import Config

    if not isinstance(obj, type):
        return "not a class"
    cfg = getattr(obj, "Config", None)
    if not (isinstance(cfg, type) and issubclass(cfg, Config)):
        return "has no Config (a frozen dataclass deriving from engine.component.Config)"
    return None


def register(kind: str, name: str, *, source: str = "built-in", **meta: Any):
    """Decorator: add ``obj`` under ``kind``/``name`` with optional metadata (e.g. a job's title)."""
    _check_kind(kind)

    def add(obj):
        problem = _contract_error(kind, obj)
        if problem:
            raise RealcalError(f"{kind} {name!r}: {problem}")
        _REGISTRY[kind][name] = Entry(kind, name, obj, dict(meta), source)
        if isinstance(obj, type):
            obj.registry_name = name
        return obj
    return add


def unregister(kind: str, name: str) -> None:
    _REGISTRY.get(kind, {}).pop(name, None)


@contextlib.contextmanager
def swapped(kind: str, name: str, obj: Any) -> Iterator[Entry]:
    """Temporarily replace a registered entry's object (its metadata kept): for tests and tools that
    need a stand-in, e.g. a training job that does not train."""
    old = entry(kind, name)
    _REGISTRY[kind][name] = dataclasses.replace(old, obj=obj)
    try:
        yield _REGISTRY[kind][name]
    finally:
        _REGISTRY[kind][name] = old


def load_plugins(kind: str | None = None, force: bool = False) -> dict[str, dict[str, str]]:
    """Entry points of installed packages, for one kind or all; returns {kind: {name: error}}."""
    from importlib.metadata import entry_points

    for k in ([kind] if kind else list(KINDS)):
        spec = _check_kind(k)
        if k in _PLUGINS_LOADED and not force:
            continue
        _PLUGINS_LOADED.add(k)
        for ep in entry_points(group=spec.group):
            if ep.name in _REGISTRY[k] and _REGISTRY[k][ep.name].source == "built-in":
                _PLUGIN_ERRORS.setdefault(k, {})[ep.name] = f"{ep.value}: a built-in {k} has this name"
                continue
            try:
                obj = ep.load()
                dist = getattr(getattr(ep, "dist", None), "name", None) or ep.value.split(":")[0]
                register(k, ep.name, source=f"plugin {dist}", **dict(getattr(obj, "registry_meta", {}) or {}))(obj)
                _PLUGIN_ERRORS.get(k, {}).pop(ep.name, None)
            except Exception as exc:  # a broken third-party package must not break realcal
                _PLUGIN_ERRORS.setdefault(k, {})[ep.name] = f"{ep.value}: {type(exc).__name__}: {exc}"
                logger.warning("plugin %s %r not loaded: %s", k, ep.name, _PLUGIN_ERRORS[k][ep.name])
    return {k: dict(v) for k, v in _PLUGIN_ERRORS.items() if v}


def plugin_errors(kind: str | None = None) -> dict[str, dict[str, str]]:
    load_plugins(kind)
    return {k: dict(v) for k, v in _PLUGIN_ERRORS.items() if v and (kind is None or k == kind)}


def _load(kind: str) -> None:
    spec = _check_kind(kind)
    if kind not in _LOADED:
        for module in spec.modules:
            importlib.import_module(module)
        _LOADED.add(kind)
    load_plugins(kind)


def entries(kind: str) -> list[Entry]:
    _load(kind)
    return [_REGISTRY[kind][n] for n in sorted(_REGISTRY[kind])]


def names(kind: str) -> list[str]:
    return [e.name for e in entries(kind)]


def entry(kind: str, name: str) -> Entry:
    _load(kind)
    options = _REGISTRY[kind]
    if name not in options:
        broken = plugin_errors(kind).get(kind)
        extra = f" (plugins that failed to load: {broken})" if broken else ""
        label = kind.replace("_", " ")
        raise RealcalError(f"unknown {label} {name!r}; valid names: {', '.join(sorted(options)) or 'none'}{extra}")
    return options[name]


def get(kind: str, name: str) -> Any:
    return entry(kind, name).obj


def config_of(kind: str, name: str, params: dict[str, Any] | None = None):
    """The component's validated, frozen configuration (unknown keys and wrong types refused)."""
    cls = get(kind, name)
    if not KINDS[kind].component:
        raise RealcalError(f"{kind} entries have no Config")
    return cls.Config.from_dict(params or {}, where=name)


def build(kind: str, name: str, params: dict[str, Any] | None = None):
    """A component built from its validated configuration."""
    return get(kind, name)(config_of(kind, name, params))


def describe() -> dict[str, list[dict[str, Any]]]:
    """Every registered name per kind, with its parameters (components) or metadata."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, spec in KINDS.items():
        rows = []
        for e in entries(kind):
            row: dict[str, Any] = {"name": e.name, "source": e.source}
            if spec.component:
                row["params"] = e.obj.Config.describe()
            row.update({k: v for k, v in e.meta.items() if isinstance(v, (str, int, float, bool))})
            rows.append(row)
        out[kind] = rows
    return out
