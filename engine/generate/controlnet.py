"""Stable Diffusion 1.5 + ControlNet-OpenPose through diffusers.

The conditioning pose is drawn as an OpenPose-18 map (``engine.poses.openpose_map``) and is the
label of the generated person. Models are given by hub id or local folder; nothing is
hard-wired. Without the weights (offline) or without a CUDA GPU the generator refuses with an
error that says what to download or set; it never falls back silently. CPU runs need
``allow_cpu`` (a 20-step 512 px image takes minutes on a CPU).

Not yet here: a few-step mode (LCM-LoRA / turbo) and SDXL + ControlNet.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from engine import component, poses
from engine.component import Resources
from engine.errors import RealcalError
from engine.generate import GeneratedPerson, GenerationRequest, GenerationResult, Generator, clip_to_image
from engine.generate.prompts import DEFAULT_NEGATIVE
from engine.registry import register

DEFAULT_BASE = "stable-diffusion-v1-5/stable-diffusion-v1-5"
DEFAULT_CONTROLNET = "lllyasviel/control_v11p_sd15_openpose"
SCHEDULERS = {
    "unipc": "UniPCMultistepScheduler",
    "ddim": "DDIMScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "dpmpp_2m": "DPMSolverMultistepScheduler",
    "pndm": "PNDMScheduler",
}


def model_available(ref: str) -> tuple[bool, str]:
    """Is a hub id cached locally, or a local folder present? (No download, no torch import.)"""
    if os.path.isdir(os.path.expanduser(ref)):
        return True, f"local folder {os.path.expanduser(ref)}"
    if ref.startswith((".", "/", "~")):
        return False, f"local folder {ref} does not exist"
    try:
        from huggingface_hub import snapshot_download

        path = snapshot_download(ref, local_files_only=True)
        return True, f"cached at {path}"
    except Exception:
        return False, (f"'{ref}' is not in the local Hugging Face cache. On a machine with internet: "
                       f"`hf download {ref}` (or set a local diffusers folder)")


def cuda_visible() -> bool:
    """A cheap check for the UI (no torch import): an NVIDIA device node or nvidia-smi."""
    return os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi") is not None


@register("generator", "controlnet")
class ControlNetGenerator(Generator):
    """SD1.5 + ControlNet-OpenPose (diffusers). See the module docstring."""

    needs_teacher = False
    inputs = frozenset({"pose", "prompt"})   # what each request must carry (see generate/job.py)

    @dataclass(frozen=True)
    class Config(component.Config):
        base: str = DEFAULT_BASE
        controlnet: str = DEFAULT_CONTROLNET
        scheduler: Literal["unipc", "ddim", "euler", "euler_a", "dpmpp_2m", "pndm"] = "unipc"   # SCHEDULERS
        steps: int = 20
        guidance: float = 7.5
        conditioning_scale: float = 1.0
        batch_size: int = 4
        negative_prompt: str = DEFAULT_NEGATIVE
        width: int = 512
        height: int = 512
        device: str = "auto"
        dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"
        allow_cpu: bool = False

        def validate(self) -> None:
            if not 1 <= self.steps <= 1000:
                raise RealcalError("controlnet: steps must be within 1..1000")
            if self.width % 8 or self.height % 8 or not 64 <= min(self.width, self.height):
                raise RealcalError("controlnet: width and height must be multiples of 8, at least 64")
            if self.batch_size < 1:
                raise RealcalError("controlnet: batch_size must be at least 1")

    def configure(self) -> None:
        self.pipe: Any = None        # the diffusers pipeline, loaded in setup()
        self._progress: Callable[[float, float | None, str | None], None] | None = None
        self._device: str | None = None

    def preflight(self) -> None:
        """Cheap checks before a job is queued: weights present (when offline) and a GPU visible."""
        offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
        for ref, what in ((self.base, "Stable Diffusion 1.5 base"), (self.controlnet, "ControlNet-OpenPose")):
            ok, why = model_available(ref)
            if not ok and offline:
                raise RealcalError(f"{what} weights unavailable (offline): {why}")
        if self.device in ("auto", "cuda") and not self.allow_cpu and not cuda_visible():
            raise RealcalError(
                "controlnet needs a CUDA GPU: none is visible here. A 20-step 512 px image takes "
                "minutes on a CPU; set allow_cpu: true to run anyway, or use the copy_paste generator")

    def setup(self, resources: Resources | None = None) -> None:
        """Load the pipeline on the configured device; denoising steps are reported through
        ``resources.progress(step, steps, message)``."""
        import diffusers
        import torch
        from diffusers import ControlNetModel, StableDiffusionControlNetPipeline

        from engine.config import resolve_device

        self._progress = resources.progress if resources is not None else None
        device = resolve_device(self.device)
        if device == "cpu" and not self.allow_cpu:
            raise RealcalError(
                "controlnet needs a CUDA GPU: none is visible here. A 20-step 512 px image takes "
                "minutes on a CPU; set allow_cpu: true to run anyway, or use the copy_paste generator")
        dtype = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}.get(
            self.dtype, torch.float16 if device.startswith("cuda") else torch.float32)
        self._device = device
        for ref, what in ((self.base, "Stable Diffusion 1.5 base"), (self.controlnet, "ControlNet-OpenPose")):
            ok, why = model_available(ref)
            if not ok and os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
                raise RealcalError(f"{what} weights unavailable (offline): {why}")
        try:
            cn = ControlNetModel.from_pretrained(self.controlnet, dtype=dtype)
            pipe = StableDiffusionControlNetPipeline.from_pretrained(
                self.base, controlnet=cn, dtype=dtype, safety_checker=None,
                requires_safety_checker=False)
        except (OSError, ValueError) as exc:
            raise RealcalError(f"cannot load the diffusion weights ({self.base} + {self.controlnet}): "
                               f"{str(exc).splitlines()[0]}. Give hub ids that exist, or local "
                               f"folders in diffusers format") from None
        scheduler_cls = getattr(diffusers, SCHEDULERS[self.scheduler])
        pipe.scheduler = scheduler_cls.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe.to(device)

    def conditioning_map(self, req: GenerationRequest) -> np.ndarray:
        return poses.openpose_map([(req.pose.keypoints, req.pose.extra)], self.width, self.height)

    def generate(self, requests: list[GenerationRequest]) -> list[GenerationResult]:
        if self.pipe is None:
            raise RealcalError("controlnet: setup() must run before generate()")
        out: list[GenerationResult] = []
        for start in range(0, len(requests), self.batch_size):
            out += self._batch(requests[start:start + self.batch_size])
        return out

    def _batch(self, reqs: list[GenerationRequest]) -> list[GenerationResult]:
        import torch
        from PIL import Image

        t0 = time.perf_counter()
        maps = [self.conditioning_map(r) for r in reqs]
        gen_device = "cpu" if self._device == "mps" else self._device
        generators = [torch.Generator(device=gen_device).manual_seed(int(r.seed)) for r in reqs]

        def on_step_end(pipe, step, timestep, callback_kwargs):
            if self._progress:
                self._progress(step + 1, self.steps, f"denoising step {step + 1}/{self.steps}")
            return callback_kwargs

        result = self.pipe(
            prompt=[r.prompt or "" for r in reqs],
            negative_prompt=[self.negative_prompt] * len(reqs),
            image=[Image.fromarray(m) for m in maps],
            num_inference_steps=self.steps, guidance_scale=self.guidance,
            controlnet_conditioning_scale=self.conditioning_scale,
            width=self.width, height=self.height, generator=generators, output_type="np",
            callback_on_step_end=on_step_end)
        images = (np.clip(result.images, 0, 1) * 255).round().astype(np.uint8)
        seconds = (time.perf_counter() - t0) / len(reqs)
        results = []
        for r, img, cmap in zip(reqs, images, maps):
            k = clip_to_image(r.pose.keypoints, self.width, self.height)
            extra = {n: (j if 0 <= j[0] < self.width and 0 <= j[1] < self.height else [0.0, 0.0, 0.0])
                     for n, j in r.pose.extra.items()}
            lineage = {"generator": "controlnet", "params": self.params(), "device_used": self._device, "seed": r.seed,
                       "prompt": r.prompt, "prompt_axes": r.prompt_axes,
                       "negative_prompt": self.negative_prompt,
                       "anchors": r.pose.anchor_person_ids, "transform": r.pose.transform}
            results.append(GenerationResult(
                index=r.index, image=img, persons=[GeneratedPerson(k, extra or None, None)],
                lineage=lineage, source_image_ids={"anchor": list(r.pose.anchor_image_ids)},
                seconds=seconds, conditioning=cmap))
        return results
