"""Prompt templates with diversity axes, sampled per image and stored with it."""
from __future__ import annotations

from typing import Any

import numpy as np

DEFAULT_TEMPLATE = ("a photo of {person} wearing {clothing}, {activity}, {scene}, {lighting}, "
                    "{camera}, full body, high quality")
DEFAULT_AXES: dict[str, list[str]] = {
    "person": ["a young woman", "a young man", "a middle-aged woman", "a middle-aged man",
               "an elderly man", "an elderly woman", "a teenage girl", "a teenage boy",
               "an athletic woman", "an athletic man"],
    "clothing": ["sportswear", "a t-shirt and jeans", "a tracksuit", "a gymnastics leotard",
                 "running shorts and a vest", "a hoodie and trousers", "a summer dress",
                 "a climbing harness and shorts"],
    "activity": ["doing parkour", "doing gymnastics", "running on a track", "jumping",
                 "stretching", "dancing", "playing sport"],
    "scene": ["in a city street", "in a park", "on an athletics track", "in a gym",
              "on a beach", "on a rooftop", "in a sports hall", "in a forest clearing"],
    "lighting": ["daylight", "overcast light", "golden hour light", "indoor lighting",
                 "harsh midday sun"],
    "camera": ["shot on a DSLR", "wide angle", "telephoto lens", "smartphone photo",
               "sports photography"],
}
DEFAULT_NEGATIVE = ("lowres, bad anatomy, extra limbs, missing limbs, deformed hands, blurry, "
                    "cropped, watermark, text, multiple people")


def sample_prompt(rng: np.random.Generator, template: str = DEFAULT_TEMPLATE,
                  axes: dict[str, list[str]] | None = None) -> tuple[str, dict[str, str]]:
    axes = axes or DEFAULT_AXES
    chosen = {name: values[int(rng.integers(len(values)))] for name, values in axes.items() if values}
    try:
        return template.format(**chosen), chosen
    except KeyError as exc:
        from engine.errors import RealcalError

        raise RealcalError(f"prompt template uses {{{exc.args[0]}}} but no such axis is defined; "
                           f"axes: {', '.join(axes)}") from None


def check_axes(axes: Any) -> dict[str, list[str]]:
    from engine.errors import RealcalError

    if not isinstance(axes, dict) or not all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                             for v in axes.values()):
        raise RealcalError("prompt axes must map each axis name to a list of strings")
    return axes
