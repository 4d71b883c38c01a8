"""The training recipe: one typed, frozen type from the experiment file to ``model.train(**recipe)``.

``Recipe.from_dict`` validates a recipe once (unknown keys, types, ranges); an experiment stores it,
``engine.train.train.resolve_params`` records it with a run, and :meth:`Recipe.ultralytics_args`
is what Ultralytics receives. Defaults are written here only.

"Steps" always means optimizer steps: Ultralytics steps once every ``accumulate = max(round(nbs /
batch), 1)`` batches, counting batches across epochs, so a run of ``B`` batches takes ``B //
accumulate`` optimizer steps (:func:`step_plan`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from engine import component
from engine.errors import RealcalError

BN_STATS = ("train", "frozen")
CHECKPOINTS = {
    "best": "validate every epoch and keep the epoch that scores best on val (the val figures are then optimistic: "
            "val chose the epoch)",
    "last": "no validation during training; keep the last epoch (val stays untouched until it is scored once; "
            "cheaper on a CPU)",
}
FREEZE_PRESETS = {
    "keypoint-branch": "everything but the pose head's keypoint branch: backbone, neck and the head's box and "
                       "class branches keep their pretrained weights (and BatchNorm statistics)",
}


def check_freeze(value: Any) -> None:
    """``freeze`` is a layer count (int), a list of layers/sub-modules (``[0, 1, "23.cv2"]``) or a preset."""
    if isinstance(value, bool):
        raise RealcalError("freeze must be a number of layers, a list of layers or a preset, not true/false")
    if isinstance(value, int):
        if not 0 <= value <= 1000:
            raise RealcalError("freeze must be within 0..1000 layers")
        return
    if isinstance(value, str):
        if value not in FREEZE_PRESETS:
            raise RealcalError(f"unknown freeze preset {value!r}; valid: {', '.join(FREEZE_PRESETS)}, "
                               f"a number of layers, or a list of layers")
        return
    if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0
                                       or isinstance(v, str) and re.fullmatch(r"\d+(\.\w+)*", v) for v in value):
        return
    raise RealcalError(f"freeze {value!r}: expected a number of layers, a list such as [0, 1, \"23.cv2\"], "
                       f"or one of {', '.join(FREEZE_PRESETS)}")


def step_plan(n_train: int, epochs: int, batch: int, nbs: int) -> dict[str, Any]:
    """How many optimizer steps a run takes: Ultralytics steps once every ``max(round(nbs / batch), 1)`` batches.

    ``warning`` is set when the run is too short to move a pretrained model much (fewer than 100 steps):
    with the default nominal batch of 64, 10 epochs of 100 images at batch 16 are only 17 steps.
    """
    batches = max(1, math.ceil(int(n_train) / int(batch))) * int(epochs)
    accumulate = max(round(int(nbs) / int(batch)), 1)
    steps = batches // accumulate
    text = (f"{n_train} train images, {epochs} epochs at batch {batch}: {batches} batches, one optimizer step every "
            f"{accumulate} batch{'es' if accumulate > 1 else ''} (nbs {nbs}) = {steps} optimizer steps")
    warning = None
    if steps < 100:
        warning = (f"only {steps} optimizer steps: the model will barely move from its starting weights. "
                   + (f"Set nbs to the batch size ({batch}) for {batches} steps, or train longer."
                      if accumulate > 1 else "Train longer (more epochs)."))
    return {"batches": batches, "accumulate": accumulate, "steps": steps, "text": text, "warning": warning}


@dataclass(frozen=True)
class Recipe(component.Config):
    model: str = "yolo11n-pose"        # an asset name, a .pt path, or a model .yaml (from scratch)
    epochs: int = 10
    imgsz: int = 320
    batch: int = 8
    lr0: float = 5e-5                  # the LSPET benchmark's recipe, chosen on val (docs/results/lspet/RECIPE.md)
    optimizer: str = "AdamW"
    freeze: int | str | list = 0       # layers, a list of layers/sub-modules, or a preset (FREEZE_PRESETS)
    mosaic: float = 0.0
    warmup_epochs: float = 0.0
    seed: int = 0
    patience: int = 100
    nbs: int = 8                       # Ultralytics' nominal batch: one optimizer step every round(nbs / batch) batches
    #                                    (its default, 64, made 40 epochs of 300 images only 65 steps)
    mask_unannotated: bool = True      # fill people the teacher finds but nobody labelled in real train images
    bn_stats: Literal["train", "frozen"] = "train"   # frozen: BatchNorm keeps the pretrained running statistics
    checkpoint: Literal["best", "last"] = "best"     # best: the epoch best on val; last: no per-epoch validation
    val_period: int = 1                # checkpoint best: validate every k epochs (and the last); best is among those
    threads: int = -1                  # CPU threads for training and evaluation: -1 = Ultralytics' choice (cores - 1,
    #                                    1..8: one thread on 2 cores; safe when anything else runs), 0 = every core
    #                                    (1.57x on an idle 2-core machine, 5x slower if another process is busy:
    #                                    bench/train_overhead.py), n = n threads

    def validate(self) -> None:
        if not 1 <= self.epochs <= 10_000:
            raise RealcalError("epochs must be within 1..10,000")
        if not 1 <= self.batch <= 4096:
            raise RealcalError("batch must be within 1..4096 images")
        if not 1 <= self.nbs <= 4096:
            raise RealcalError(f"nbs (nominal batch size) must be within 1..4096 images, got {self.nbs!r}")
        if not 32 <= self.imgsz <= 4096:
            raise RealcalError("imgsz must be within 32..4096 pixels")
        if not self.lr0 > 0:
            raise RealcalError("lr0 must be a positive learning rate")
        if not 1 <= self.val_period <= 10_000:
            raise RealcalError("val_period must be within 1..10,000 epochs")
        if not -1 <= self.threads <= 1024:
            raise RealcalError("threads must be 0 (every core), -1 (Ultralytics' choice) or a number of threads")
        if self.seed < 0 or self.patience < 0 or self.mosaic < 0 or self.warmup_epochs < 0:
            raise RealcalError("seed, patience, mosaic and warmup_epochs must be >= 0")
        check_freeze(self.freeze)

    @classmethod
    def from_dict(cls, params: dict[str, Any] | None = None, *, where: str | None = "recipe") -> Recipe:
        params = dict(params or {})
        if isinstance(params.get("lr0"), str):       # YAML 1.1 reads 5e-5 (no dot) as text
            try:
                params["lr0"] = float(params["lr0"])
            except ValueError:
                pass
        return super().from_dict(params, where=where)

    @property
    def accumulate(self) -> int:
        return max(round(self.nbs / self.batch), 1)

    def plan(self, n_train: int, epochs: int | None = None) -> dict[str, Any]:
        """The optimizer steps of this recipe on ``n_train`` images (``epochs`` overrides the recipe's)."""
        return step_plan(n_train, self.epochs if epochs is None else epochs, self.batch, self.nbs)

    def epochs_for_steps(self, n_train: int, steps: int) -> int:
        """The whole number of epochs whose optimizer steps on ``n_train`` images come nearest ``steps``
        (ties: Python's ``round``, i.e. to the even number of epochs)."""
        per_epoch = max(1, math.ceil(n_train / self.batch)) / self.accumulate
        guess = max(1, round(steps / per_epoch))
        options = sorted({max(1, guess - 1), guess, guess + 1})
        return min(options, key=lambda e: (abs(self.plan(n_train, e)["steps"] - steps), e != guess, e))

    def ultralytics_args(self) -> dict[str, Any]:
        """The arguments ``model.train`` receives from the recipe (``freeze`` needs the model: see
        ``engine.train.train.freeze_layers``; ``model`` is what is loaded)."""
        return {"epochs": self.epochs, "imgsz": self.imgsz, "batch": self.batch, "lr0": self.lr0,
                "optimizer": self.optimizer, "mosaic": self.mosaic, "warmup_epochs": self.warmup_epochs,
                "seed": self.seed, "nbs": self.nbs, "patience": self.patience, "val": self.checkpoint == "best"}


RECIPE_KEYS = tuple(Recipe.__dataclass_fields__)
