"""The shape of the code: no import circles, the layers (App -> Engine -> Store), SQL only in store/,
and a generator added as a plugin in one file, end to end."""
from __future__ import annotations

import ast
import re
import sys
import textwrap
from pathlib import Path

import pytest

from engine import registry

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "store", "ui", "app_pages")


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for p in (REPO / pkg).rglob("*.py"):
            parts = list(p.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = p
    return mods


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports, at any level (function-local imports count too)."""
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")
                    parts = parts[:len(parts) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            graph[mod] |= {t for t in targets if t in mods and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(max(10_000, sys.getrecursionlimit()))

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_imports_have_no_circles():
    found = cycles(import_graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_layers_point_one_way():
    """store/ knows nothing above it; engine/ knows no UI; ui/ knows no pages."""
    graph = import_graph()
    above = {"store": ("engine", "ui", "app_pages"), "engine": ("ui", "app_pages"), "ui": ("app_pages",)}
    wrong = [f"{m} -> {t}" for m, ts in graph.items() for t in ts
             if t.split(".")[0] in above.get(m.split(".")[0], ())]
    assert not wrong, wrong


SQL = re.compile(r"\bSELECT\b.*\bFROM\b|\bINSERT (OR \w+ )?INTO\b|\bUPDATE \w+ SET\b|\bDELETE FROM\b|"
                 r"\b(CREATE|DROP|ALTER) (TABLE|INDEX|VIEW)\b|\bPRAGMA \w+")


def test_sql_lives_only_in_store():
    offenders = []
    for pkg in ("engine", "ui", "app_pages"):
        for p in (REPO / pkg).rglob("*.py"):
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
                if SQL.search(line) or re.search(r"\bdb\.(execute|query)\(", line):
                    offenders.append(f"{p.relative_to(REPO)}:{i}: {line.strip()[:80]}")
    app = REPO / "app.py"
    offenders += [f"app.py:{i}" for i, line in enumerate(app.read_text().splitlines(), 1) if SQL.search(line)]
    assert not offenders, "SQL outside store/:\n" + "\n".join(offenders)


PLUGIN = '''
"""A plugin generator in one file: the sampled pose drawn as a stick figure on a flat background."""
from dataclasses import dataclass

import cv2
import numpy as np

from engine import component, poses
from engine.generate import GeneratedPerson, GenerationResult, Generator, clip_to_image


class StickFigureGenerator(Generator):
    inputs = frozenset({"pose"})

    @dataclass(frozen=True)
    class Config(component.Config):
        width: int = 96
        height: int = 96
        thickness: int = 3
        grey: int = 90

    def setup(self, resources=None):
        self.ready = True

    def generate(self, requests):
        out = []
        for r in requests:
            img = np.full((self.height, self.width, 3), self.grey, np.uint8)
            k = clip_to_image(r.pose.keypoints, self.width, self.height)
            for a, b in poses.SKELETON:
                if k[a, 2] > 0 and k[b, 2] > 0:
                    cv2.line(img, tuple(int(v) for v in k[a, :2]), tuple(int(v) for v in k[b, :2]),
                             (230, 200, 40), self.thickness)
            out.append(GenerationResult(index=r.index, image=img, persons=[GeneratedPerson(k)],
                                        lineage={"generator": "stick_figure", "params": self.params(), "seed": r.seed},
                                        source_image_ids={"anchor": list(r.pose.anchor_image_ids)}))
        return out
'''


def test_a_plugin_generator_in_one_file_is_discovered_configured_and_run(tmp_path, monkeypatch, ws):
    from engine import jobs
    from engine.generate.job import resolve_params
    from engine.io import parse
    from engine.io.common import run_import
    from store import images as store_images
    from store import synthetic as store_synthetic
    from tests.helpers import make_coco

    site = tmp_path / "site"
    site.mkdir()
    (site / "realcal_stick_figure.py").write_text(textwrap.dedent(PLUGIN))     # the plugin: one file
    dist = site / "realcal_stick_figure-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: realcal-stick-figure\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[realcal.generators]\nstick_figure = realcal_stick_figure:StickFigureGenerator\n")
    monkeypatch.syspath_prepend(str(site))
    try:
        registry.load_plugins("generator", force=True)
        assert "stick_figure" in registry.names("generator")
        assert registry.entry("generator", "stick_figure").source.startswith("plugin")
        with pytest.raises(Exception, match="unknown parameter.*colour"):
            registry.build("generator", "stick_figure", {"colour": "red"})
        run_import(ws, parse("coco", make_coco(tmp_path / "coco", n=4)), split="train")
        params = resolve_params(ws, {"generator": "stick_figure", "count": 3, "seed": 2,
                                     "generator_params": {"thickness": 2}})
        assert params["generator_params"] == {"width": 96, "height": 96, "thickness": 2, "grey": 90}
        final = jobs.run_foreground(ws, "generate", params)
        assert final["status"] == "done", final.get("error")
        with ws.connect() as db:
            synth = store_images.list_images(db, kinds=["synthetic"])
            lineage = (store_synthetic.lineage_for(db, synth[0]["id"])
                       if hasattr(store_synthetic, "lineage_for") else None)
        assert len(synth) == 3 and all(im["width"] == 96 for im in synth)
        if lineage is not None:
            assert lineage["generator"] == "stick_figure"
    finally:
        registry.unregister("generator", "stick_figure")
        sys.modules.pop("realcal_stick_figure", None)
