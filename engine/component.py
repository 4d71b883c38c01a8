"""The contract every swappable component keeps: one typed, frozen configuration and one lifecycle.

A component (generator, curation stage, embedder, selector) is a class with a nested
``Config`` — a frozen dataclass deriving from :class:`Config` — that is the *only* source of its
parameters::

    @register("generator", "my_gen")
    class MyGenerator(Component):
        @dataclass(frozen=True)
        class Config(Config):
            width: int = 256
            blur: float = 0.0

        def setup(self, resources: Resources) -> None: ...        # load models (once)
        def generate(self, requests): ...                           # a pure batch call

``Config.from_dict`` validates on construction (unknown keys refused, types checked and
coerced: int, float, bool, str, tuples of those, ``Literal`` choices, ``X | None``), then the
config's own ``validate()`` checks ranges. The component's ``params()`` is ``config.as_dict()``:
what is recorded is exactly what was used, never a hand-kept list. Heavy work happens in
``setup(resources)``; progress goes through ``resources.progress(done, total, message)``.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal, Union, get_args, get_origin

from engine.errors import RealcalError


def _type_name(tp: Any) -> str:
    if get_origin(tp) is None and isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` (and converted where lossless)."""
    origin = get_origin(tp)
    if tp is Any or tp is object:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _coerce(value, opt, where)
            except RealcalError as exc:
                errors.append(str(exc))
        raise RealcalError(errors[0] if len(errors) == 1 else
                           f"{where}: {value!r} is not any of {', '.join(_type_name(o) for o in options)}")
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise RealcalError(f"{where}: {value!r} is not one of {', '.join(repr(c) for c in choices)}")
        return value
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise RealcalError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise RealcalError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise RealcalError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin is list or tp is list:
        if not isinstance(value, (list, tuple)):
            raise RealcalError(f"{where}: expected a list, got {value!r}")
        args = get_args(tp)
        return [(_coerce(v, args[0], f"{where}[{i}]") if args else v) for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise RealcalError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise RealcalError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RealcalError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise RealcalError(f"{where}: expected text, got {value!r}")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise RealcalError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    return value


def _plain(value: Any) -> Any:
    """JSON-friendly: tuples become lists, nested mappings copied."""
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Config:
    """Base of every component configuration: frozen, typed, validated on construction.

    ``examples`` (a class attribute, not a parameter) may give a valid non-default value for a
    parameter whose type alone does not say one (the contract test uses it)."""

    examples: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        where = type(self).__qualname__
        for f in fields(self):
            value = getattr(self, f.name)
            object.__setattr__(self, f.name, _coerce(value, hints.get(f.name, Any), f"{where}: {f.name}"))
        self.validate()

    def validate(self) -> None:
        """Range and cross-field checks; raise RealcalError with a message a user can act on."""

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None = None, *, where: str | None = None):
        params = dict(params or {})
        if not isinstance(params, dict):
            raise RealcalError(f"{where or cls.__qualname__}: parameters must be a mapping, not {params!r}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise RealcalError(f"{where or cls.__qualname__}: unknown parameter(s) {', '.join(unknown)}; "
                               f"valid: {', '.join(names) or 'none'}")
        try:
            return cls(**params)
        except RealcalError as exc:
            raise RealcalError(str(exc).replace(cls.__qualname__, where) if where else str(exc)) from None

    def as_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Each parameter with its type and default (for the UI and `realcal components`)."""
        hints = typing.get_type_hints(cls)
        out = []
        for f in fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            out.append({"name": f.name, "type": _type_name(hints.get(f.name, Any)), "default": _plain(default)})
        return out


@dataclass
class Resources:
    """What a component's ``setup`` may use: the device, the teacher's weights, a progress callback.

    ``person_detector()`` builds the teacher as a person detector on first use (only components that
    ask for it pay for loading it).
    """
    device: str = "auto"
    teacher_weights: str | None = None
    progress: Callable[[float, float | None, str | None], None] | None = None
    _detector: Callable | None = None

    def person_detector(self) -> Callable:
        if self._detector is None:
            if not self.teacher_weights:
                raise RealcalError("this component needs the teacher (a person detector), but no teacher "
                                   "weights were resolved (see `realcal status` and Settings)")
            from engine.curate.teacher import person_detector

            self._detector = person_detector(self.teacher_weights, self.device)
        return self._detector

    def report(self, done: float, total: float | None, message: str | None = None) -> None:
        if self.progress is not None:
            self.progress(done, total, message)


ConfigBase = Config


class Component:
    """Base of generators, stages, embedders and selectors (see the module docstring)."""

    Config: ClassVar[type[ConfigBase]] = ConfigBase
    registry_name: ClassVar[str] = ""

    def __init__(self, config: ConfigBase | None = None, /, **params: Any):
        if config is None:
            config = self.Config.from_dict(params, where=self.registry_name or type(self).__name__)
        elif params:
            raise RealcalError(f"{type(self).__name__}: give a Config or keyword parameters, not both")
        elif not isinstance(config, self.Config):
            raise RealcalError(f"{type(self).__name__}: expected {self.Config.__qualname__}, "
                               f"got {type(config).__name__}")
        self.config = config
        self.configure()

    def __getattr__(self, name: str) -> Any:
        """A parameter reads as an attribute (``self.width`` is ``self.config.width``); an attribute the
        component sets itself takes precedence, so never give one a parameter's name."""
        if name == "config" or name.startswith("__"):
            raise AttributeError(name)
        try:
            return getattr(self.config, name)
        except AttributeError:
            raise AttributeError(f"{type(self).__name__} has no attribute or parameter {name!r}") from None

    def configure(self) -> None:
        """Derived, cheap state from the config (no model loading: that is ``setup``)."""

    def params(self) -> dict[str, Any]:
        """The configuration as recorded in lineage and results (from the config, never by hand)."""
        return self.config.as_dict()

    def setup(self, resources: Resources | None = None) -> None:
        """Load models and whatever else is heavy, once per process."""
