"""Training schedules: how an arm's real and synthetic images are fed to the model.

* ``union`` (default): one flat training set, real and synthetic images shuffled together.
* ``weighted``: a set share of synthetic images in every epoch (and so, in expectation, in every batch):
  the smaller side is repeated (whole copies first, the remainder drawn by the run's seed) until synthetic
  images make ``synthetic_fraction`` of the epoch; every image is seen at least once.
* ``synthetic_first``: pre-train on the synthetic images, then fine-tune on the real ones (two stages, each
  with its own epochs and learning rate; the second starts from the first's last weights).

Step accounting (:func:`plan`): with a step budget (an experiment's step matching), ``union`` and ``weighted``
spend it on their epoch list; ``synthetic_first`` with ``budget: matched`` splits it (``pretrain_share`` to the
synthetic stage, the rest to the real one), so the arm takes as many optimizer steps as real-only; with
``budget: extra`` the real stage alone takes the budget and the synthetic stage is added on top (the arm
then trains longer than real-only, and the report says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine import component
from engine.errors import RealcalError
from engine.train.recipe import Recipe

KINDS = {
    "union": "real and synthetic images shuffled together in one training set",
    "weighted": "a set share of synthetic images in every epoch (the smaller side repeated)",
    "synthetic_first": "pre-train on the synthetic images, then fine-tune on the real ones",
}


@dataclass(frozen=True)
class Schedule(component.Config):
    kind: Literal["union", "weighted", "synthetic_first"] = "union"
    synthetic_fraction: float = 0.5      # weighted: the share of synthetic images in every epoch
    pretrain_share: float = 0.3          # synthetic_first: the synthetic stage's share of the step budget
    pretrain_epochs: int = 0             # synthetic_first without a step budget: its epochs (0: from the share)
    pretrain_lr0: float = 0.0            # synthetic_first: stage 1 learning rate (0: the recipe's lr0)
    finetune_lr0: float = 0.0            # synthetic_first: stage 2 learning rate (0: the recipe's lr0)
    budget: Literal["matched", "extra"] = "matched"   # synthetic_first: split the budget, or add stage 1 on top

    def validate(self) -> None:
        if not 0.0 < self.synthetic_fraction < 1.0:
            raise RealcalError("synthetic_fraction must be between 0 and 1 (exclusive)")
        if not 0.0 < self.pretrain_share < 1.0:
            raise RealcalError("pretrain_share must be between 0 and 1 (exclusive)")
        if self.pretrain_epochs < 0 or self.pretrain_lr0 < 0 or self.finetune_lr0 < 0:
            raise RealcalError("pretrain_epochs, pretrain_lr0 and finetune_lr0 must be >= 0")

    def describe_short(self) -> str:
        if self.kind == "weighted":
            return f"weighted: {self.synthetic_fraction:.0%} synthetic per epoch"
        if self.kind == "synthetic_first":
            lr = (f", lr0 {self.pretrain_lr0:g} then {self.finetune_lr0:g}"
                  if self.pretrain_lr0 or self.finetune_lr0 else "")
            return (f"synthetic first ({self.pretrain_share:.0%} of the steps"
                    f"{' added on top' if self.budget == 'extra' else ''}), then real{lr}")
        return "union"


def from_arm(value: Any, where: str) -> Schedule:
    """An arm's ``schedule``: a kind name or a mapping of the fields above."""
    if value is None:
        return Schedule()
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, dict):
        raise RealcalError(f"{where}: schedule is a kind ({', '.join(KINDS)}) or a mapping such as "
                           f"{{kind: weighted, synthetic_fraction: 0.3}}")
    return Schedule.from_dict(value, where=where)


def repeats(real_ids: list[int], synthetic_ids: list[int], fraction: float, seed: int = 0) -> dict[int, int]:
    """Copies of each image in a ``weighted`` epoch: synthetic images make ``fraction`` of it (to the nearest
    image), the smaller side repeated — whole copies for everyone, the remainder to a seeded draw."""
    r, s = len(real_ids), len(synthetic_ids)
    out = {i: 1 for i in [*real_ids, *synthetic_ids]}
    if not r or not s:
        return out
    if s / (r + s) < fraction:     # too few synthetic: repeat them
        side, want = sorted(synthetic_ids), round(fraction * r / (1 - fraction))
    else:                          # too few real: repeat them
        side, want = sorted(real_ids), round((1 - fraction) * s / fraction)
    whole, extra = divmod(max(want, len(side)), len(side))
    lucky = set(np.random.default_rng(seed).permutation(len(side))[:extra].tolist())
    for n, i in enumerate(side):
        out[i] = whole + (1 if n in lucky else 0)
    return out


def plan(schedule: Schedule, recipe: Recipe, n_real: int, n_synthetic: int,
         steps: int | None = None) -> dict[str, Any]:
    """The stages of one run: each with its data, images per epoch, epochs, optimizer steps and lr0.

    ``steps``: the step budget to match (an experiment's real-only steps); None trains ``recipe.epochs``."""
    def stage(name: str, data: str, images: int, epochs: int, lr0: float) -> dict[str, Any]:
        return {"stage": name, "data": data, "images": images, "epochs": epochs, "lr0": lr0,
                "steps": recipe.plan(images, epochs)["steps"]}

    if schedule.kind in ("union", "weighted"):
        images = n_real + n_synthetic
        if schedule.kind == "weighted" and n_real and n_synthetic:
            f = schedule.synthetic_fraction
            if n_synthetic / images < f:
                images = n_real + max(n_synthetic, round(f * n_real / (1 - f)))
            else:
                images = n_synthetic + max(n_real, round((1 - f) * n_synthetic / f))
        epochs = recipe.epochs if steps is None else recipe.epochs_for_steps(images, steps)
        stages = [stage("train", schedule.kind, images, epochs, recipe.lr0)]
    else:
        if not n_synthetic or not n_real:
            raise RealcalError("a synthetic_first schedule needs both synthetic and real training images")
        lr_pre = schedule.pretrain_lr0 or recipe.lr0
        lr_fine = schedule.finetune_lr0 or recipe.lr0
        if steps is None:
            fine_epochs = recipe.epochs
            fine_steps = recipe.plan(n_real, fine_epochs)["steps"]
            if schedule.pretrain_epochs:
                pre_epochs = schedule.pretrain_epochs
            else:
                share = schedule.pretrain_share
                pre_epochs = recipe.epochs_for_steps(n_synthetic, max(1, round(fine_steps * share / (1 - share))))
        else:
            pre_steps = max(1, round(steps * schedule.pretrain_share))
            fine_steps = steps if schedule.budget == "extra" else max(1, steps - pre_steps)
            pre_epochs = recipe.epochs_for_steps(n_synthetic, pre_steps)
            fine_epochs = recipe.epochs_for_steps(n_real, fine_steps)
        stages = [stage("pretrain", "synthetic", n_synthetic, pre_epochs, lr_pre),
                  stage("finetune", "real", n_real, fine_epochs, lr_fine)]
    total = sum(s["steps"] for s in stages)
    text = "; ".join(f"{s['stage']} on {s['data']} ({s['images']} images/epoch): {s['epochs']} epochs, "
                     f"{s['steps']} steps, lr0 {s['lr0']:g}" for s in stages)
    return {"kind": schedule.kind, "stages": stages, "steps": total, "epochs": sum(s["epochs"] for s in stages),
            "text": f"{schedule.describe_short()}: {text}"}


def fit(schedule: Schedule, recipe: Recipe, n_real: int, n_synthetic: int,
        steps: int | None = None) -> tuple[Recipe, dict[str, Any] | None, dict[str, Any]]:
    """What a train job receives for one run: the recipe with the last stage's epochs, the schedule (None for a
    flat union) with the first stage's epochs filled in, and the :func:`plan` they follow."""
    p = plan(schedule, recipe, n_real, n_synthetic, steps)
    run_recipe = recipe.replace(epochs=p["stages"][-1]["epochs"])
    if schedule.kind == "union":
        return run_recipe, None, p
    if schedule.kind == "synthetic_first":       # the train job re-plans from these epochs and gets the same stages
        schedule = schedule.replace(pretrain_epochs=p["stages"][0]["epochs"])
    return run_recipe, schedule.as_dict(), p
