"""Executors for the batch stages: the same batch function, run here or on Ray Data actors.

A *batch function* is built by a factory named ``"module:function"`` with keyword arguments (so a
Ray actor can build its own copy: one model load per actor) and maps a list of items to a list of
results of the same length. ``Executor.map(factory, kwargs, items)`` yields ``(items, results)``
chunk by chunk *as they arrive*, so callers write each chunk to the workspace at once.

* ``local`` (default): one instance in this process, chunks in order.
* ``ray``: ``ray.data.from_items(...).map_batches(<actor class>, concurrency=N)`` over an actor
  pool, ``num_cpus``/``num_gpus`` per actor configurable. Ray Data restarts a killed actor and
  retries its batch (``max_restarts``/``max_task_retries`` = -1); a batch's results reach the
  caller once, and every writer is idempotent anyway (keyed by content hash), so nothing is
  written twice. ``address`` points at an existing cluster (``ray://host:10001`` or ``auto``);
  without one a local Ray instance is started with this machine's CPUs.

On a 2-core machine give actors fractional CPUs (default 0.5): actors that take every CPU leave
none for Ray Data's read tasks and the job stalls "backpressured".
"""
from __future__ import annotations

import importlib
import os
import pickle
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.errors import RealcalError

EXECUTORS = ("local", "ray")


def resolve_factory(name: str) -> Callable[..., Callable[[list], list]]:
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise RealcalError(f"cannot load batch function factory {name!r}: {e}") from e


@dataclass
class ExecutorConfig:
    name: str = "local"
    address: str | None = None          # ray: cluster address; None = start a local instance
    actors: int = 2                     # ray: actor pool size
    cpus_per_actor: float = 0.5
    gpus_per_actor: float = 0.0
    batch_size: int = 16
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict | str | None) -> ExecutorConfig:
        if d is None:
            return cls()
        if isinstance(d, str):
            d = {"name": d}
        unknown = set(d) - {"name", "address", "actors", "cpus_per_actor", "gpus_per_actor", "batch_size"}
        if unknown:
            raise RealcalError(f"unknown executor option(s) {', '.join(sorted(unknown))}")
        cfg = cls(**d)
        if cfg.name not in EXECUTORS:
            raise RealcalError(f"unknown executor {cfg.name!r}; valid: {', '.join(EXECUTORS)}")
        if cfg.actors < 1 or cfg.batch_size < 1 or cfg.cpus_per_actor < 0 or cfg.gpus_per_actor < 0:
            raise RealcalError("executor: actors and batch_size must be >= 1; cpus/gpus per actor >= 0")
        return cfg

    def as_dict(self) -> dict:
        return {"name": self.name, "address": self.address, "actors": self.actors,
                "cpus_per_actor": self.cpus_per_actor, "gpus_per_actor": self.gpus_per_actor,
                "batch_size": self.batch_size}


def build(cfg: dict | str | ExecutorConfig | None) -> LocalExecutor | RayExecutor:
    cfg = cfg if isinstance(cfg, ExecutorConfig) else ExecutorConfig.from_dict(cfg)
    return RayExecutor(cfg) if cfg.name == "ray" else LocalExecutor(cfg)


class LocalExecutor:
    def __init__(self, cfg: ExecutorConfig | None = None):
        self.cfg = cfg or ExecutorConfig()
        self._fns: dict[tuple, Callable] = {}

    def map(self, factory: str, kwargs: dict, items: Sequence[Any],
            batch_size: int | None = None) -> Iterator[tuple[list, list]]:
        key = (factory, repr(sorted(kwargs.items())))
        if key not in self._fns:  # one model load per executor, like one per actor
            self._fns[key] = resolve_factory(factory)(**kwargs)
        fn = self._fns[key]
        step = batch_size or self.cfg.batch_size
        for start in range(0, len(items), step):
            chunk = list(items[start:start + step])
            out = fn(chunk)
            if len(out) != len(chunk):
                raise RealcalError(f"{factory}: returned {len(out)} results for {len(chunk)} items")
            yield chunk, out


class _RayActor:
    """Built once per actor: loads the model through the factory, then maps pickled batches."""

    def __init__(self, factory: str, kwargs: dict):
        self.fn = resolve_factory(factory)(**kwargs)

    def __call__(self, batch: dict) -> dict:
        import numpy as np

        items = [pickle.loads(b) for b in batch["payload"]]
        out = self.fn(items)
        if len(out) != len(items):
            raise RuntimeError(f"returned {len(out)} results for {len(items)} items")
        return {"i": np.asarray(batch["i"]), "payload": np.array([pickle.dumps(o) for o in out], dtype=object)}


def ray_init(address: str | None = None, num_cpus: int | None = None) -> None:
    try:
        import ray
    except ImportError as e:
        raise RealcalError("the ray executor needs Ray Data: pip install 'ray[data]'") from e
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if address:
        ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False, _node_ip_address="127.0.0.1",
                 runtime_env={"env_vars": {"RAY_USAGE_STATS_ENABLED": "0"}})


class RayExecutor:
    def __init__(self, cfg: ExecutorConfig):
        self.cfg = cfg

    def map(self, factory: str, kwargs: dict, items: Sequence[Any],
            batch_size: int | None = None) -> Iterator[tuple[list, list]]:
        if not items:
            return
        import ray

        ray_init(self.cfg.address)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        items = list(items)
        rows = [{"i": i, "payload": pickle.dumps(it)} for i, it in enumerate(items)]
        ds = ray.data.from_items(rows, override_num_blocks=max(1, min(len(rows), 4 * self.cfg.actors)))
        out = ds.map_batches(_RayActor, fn_constructor_args=(factory, kwargs),
                             compute=ray.data.ActorPoolStrategy(size=self.cfg.actors),
                             num_cpus=self.cfg.cpus_per_actor, num_gpus=self.cfg.gpus_per_actor or None,
                             batch_size=batch_size or self.cfg.batch_size, batch_format="numpy")
        seen: set[int] = set()
        for batch in out.iter_batches(batch_size=None, batch_format="numpy"):
            idx = [int(i) for i in batch["i"]]
            fresh = [(i, pickle.loads(p)) for i, p in zip(idx, batch["payload"]) if i not in seen]
            seen.update(i for i, _ in fresh)
            if fresh:
                yield [items[i] for i, _ in fresh], [r for _, r in fresh]
        if len(seen) != len(items):
            raise RealcalError(f"ray executor: {len(items) - len(seen)} items came back without a result")
