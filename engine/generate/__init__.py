"""Generators: pure functions from a batch of requests to a batch of results.

A generator is a :class:`Generator`: its parameters are its frozen ``Config`` (nothing heavy at
construction), it loads models in ``setup(resources)`` and maps ``generate(requests) -> results``.
It declares which request fields it needs in ``inputs`` (``pose``, ``prompt``, ``anchors``,
``backgrounds``) and the job fills exactly those; ``needs_teacher`` says whether ``setup`` uses the
teacher. Requests carry everything a sample needs (seed, conditioning pose, source records), so the
same function can be mapped over several processes or GPUs without a rewrite. See
``engine/generate/job.py`` for the job that feeds it and stores the results with their lineage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.component import Component


@dataclass
class GenerationRequest:
    index: int
    seed: int
    width: int
    height: int
    pose: Any = None                       # PoseSample (controlnet)
    anchors: list[dict] = field(default_factory=list)       # anchor person rows (copy_paste)
    backgrounds: list[dict] = field(default_factory=list)   # background image rows (copy_paste)
    prompt: str | None = None
    prompt_axes: dict[str, str] | None = None


@dataclass
class GeneratedPerson:
    keypoints: np.ndarray                  # (17, 3) in the output image; v=0 outside it
    extra: dict[str, list[float]] | None = None
    bbox: tuple[float, float, float, float] | None = None


@dataclass
class GenerationResult:
    index: int
    image: np.ndarray                      # RGB uint8 (H, W, 3)
    persons: list[GeneratedPerson]
    lineage: dict[str, Any]                # everything needed to explain and reproduce it
    source_image_ids: dict[str, list[int]] # role -> real image ids (anchor, cutout, background)
    seconds: float = 0.0
    conditioning: np.ndarray | None = None # the conditioning map, when one was used


def clip_to_image(k: np.ndarray, width: int, height: int) -> np.ndarray:
    """Joints outside the image become unlabelled (v=0)."""
    k = np.asarray(k, dtype=float).copy()
    outside = (k[:, 0] < 0) | (k[:, 1] < 0) | (k[:, 0] > width - 1) | (k[:, 1] > height - 1)
    k[outside] = 0.0
    return k


class Generator(Component):
    """Base of every generator (see the module docstring). Subclasses set ``inputs``, give their
    ``Config`` a ``width`` and ``height``, and implement ``generate``."""

    inputs: frozenset[str] = frozenset()      # request fields the job must fill: pose, prompt, anchors, backgrounds
    needs_teacher: bool = False               # does setup() use resources.person_detector()?

    @property
    def requests_per_call(self) -> int:
        """The fewest requests the job should send per ``generate`` call (a ``batch_size`` parameter, else 1)."""
        return int(getattr(self.config, "batch_size", 1))

    def preflight(self) -> None:
        """Cheap checks before a job is queued (weights present, a GPU visible); raise RealcalError."""

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        raise NotImplementedError
