"""The component contract, held over every registered name (engine/registry.py, engine/component.py).

For every generator, curation stage, embedder and selector: its configuration round-trips, unknown
keys and wrong types are refused, every declared parameter reaches the component and is recorded
(``params()``), and it sets up and runs on tiny inputs. For every job kind, import and export format
and pipeline step: the entry keeps its kind's interface. A new built-in without a tiny run here fails
``test_every_built_in_component_has_a_tiny_run``: adding a component means adding its line below.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import numpy as np
import pytest

from engine import component, registry
from engine.errors import RealcalError
from tests.helpers import make_coco, make_yolo, write_image

COMPONENT_KINDS = [k for k, spec in registry.KINDS.items() if spec.component]
BUILT_IN = [(k, e.name) for k in COMPONENT_KINDS for e in registry.entries(k) if e.source == "built-in"]


# ---------------------------------------------------------------------------------------------------- helpers

def _candidates(tp: Any, default: Any) -> list[Any]:
    """Valid-looking values other than ``default`` for a parameter of type ``tp``."""
    origin = get_origin(tp)
    if origin is Literal:
        return [c for c in get_args(tp) if c != default]
    if origin in (typing.Union, __import__("types").UnionType):
        out = []
        for opt in get_args(tp):
            if opt is type(None):
                out.append(None)
            else:
                kind = opt if isinstance(opt, type) else object
                out += _candidates(opt, default if isinstance(default, kind) else None)
        return [v for v in out if v != default]
    if origin is tuple:
        args = get_args(tp)
        if default is None or len(args) != len(default):
            return []
        last = default[-1]
        bumped = [last + 1] if args[-1] is int else [last * 0.9, last * 1.1, last + 0.1]
        return [(*default[:-1], b) for b in bumped]
    if tp is bool:
        return [not default]
    if tp is int:
        d = default if isinstance(default, int) else 1
        return [v for v in (d + 1, d * 2, d - 1, 1, 2) if v != default]
    if tp is float:
        d = float(default) if isinstance(default, (int, float)) else 0.5
        return [v for v in (d * 0.5, d + 0.1, d * 1.5, 0.25, 0.5) if v != default]
    if tp is str:
        return [f"{default}-other" if default else "other"]
    if tp is dict or origin is dict:
        return [{"real_percentile": 7}]
    if tp is list or origin is list:
        return [[1]]
    return []


def other_value(cfg_cls: type, name: str) -> Any:
    """A valid value for ``name`` that is not its default (``Config.examples`` first)."""
    hints = typing.get_type_hints(cfg_cls)
    f = next(f for f in dataclasses.fields(cfg_cls) if f.name == name)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    tried = ([cfg_cls.examples[name]] if name in cfg_cls.examples else []) + _candidates(hints[name], default)
    for value in tried:
        try:
            cfg_cls.from_dict({name: value})
        except RealcalError:
            continue
        return value
    pytest.fail(f"{cfg_cls.__qualname__}.{name}: no valid non-default value found among {tried!r}; "
                f"give one in the Config's `examples`")


def _plain(value):
    return json.loads(json.dumps(value))


# ---------------------------------------------------------------------------------------------------- config

@pytest.mark.parametrize("kind,name", BUILT_IN)
def test_config_round_trips(kind, name):
    cls = registry.get(kind, name)
    cfg = cls.Config.from_dict({})
    assert dataclasses.is_dataclass(cfg) and type(cfg).__dataclass_params__.frozen
    assert cls.Config.from_dict(_plain(cfg.as_dict())) == cfg          # through JSON, as stored
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(cfg, dataclasses.fields(cfg)[0].name, None)


@pytest.mark.parametrize("kind,name", BUILT_IN)
def test_unknown_keys_and_wrong_types_are_refused(kind, name):
    with pytest.raises(RealcalError, match=f"{name}: unknown parameter.*no_such_option"):
        registry.build(kind, name, {"no_such_option": 1})
    hints = typing.get_type_hints(registry.get(kind, name).Config)
    typed = [n for n, tp in hints.items() if tp in (int, float, bool)]
    if typed:
        with pytest.raises(RealcalError, match=typed[0]):
            registry.build(kind, name, {typed[0]: "not a number"})


@pytest.mark.parametrize("kind,name", BUILT_IN)
def test_every_declared_parameter_reaches_the_component_and_is_recorded(kind, name):
    cls = registry.get(kind, name)
    for f in dataclasses.fields(cls.Config):
        value = other_value(cls.Config, f.name)
        comp = registry.build(kind, name, {f.name: value})
        expected = cls.Config.from_dict({f.name: value})
        assert comp.config == expected and getattr(comp, f.name) == getattr(expected, f.name)
        recorded = _plain(comp.params())
        assert set(recorded) == {g.name for g in dataclasses.fields(cls.Config)}, "params() must record every parameter"
        assert recorded[f.name] == _plain(expected.as_dict())[f.name]
        assert recorded[f.name] != _plain(cls.Config().as_dict())[f.name], f"{f.name}: the value did not move"
        assert registry.build(kind, name, recorded).config == comp.config   # what is recorded rebuilds it


def test_generation_job_keeps_every_generator_parameter(tmp_path):
    """The job records the generator's own params(); a parameter the user set is never dropped."""
    from engine.generate.job import resolve_params
    from engine.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    for f in dataclasses.fields(registry.get("generator", "copy_paste").Config):
        value = other_value(registry.get("generator", "copy_paste").Config, f.name)
        given = {"background": "procedural", f.name: value} if f.name != "background" else {f.name: value}
        params = resolve_params(ws, {"generator": "copy_paste", "generator_params": given})
        assert params["generator_params"][f.name] == _plain({"v": value})["v"]


# ---------------------------------------------------------------------------------------------------- tiny runs

@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A workspace with 8 labelled real train images and 4 copy-paste synthetic images (64 px)."""
    from engine import jobs
    from engine.curate.run import _with_persons, load_items
    from engine.generate.job import resolve_params
    from engine.io import parse
    from engine.io.common import run_import
    from engine.workspace import Workspace
    from store import images as store_images

    root = tmp_path_factory.mktemp("contract")
    ws = Workspace.init(root / "ws")
    run_import(ws, parse("coco", make_coco(root / "coco", n=8)), split="train")
    params = resolve_params(ws, {"generator": "copy_paste", "count": 4, "seed": 1,
                                 "generator_params": {"width": 64, "height": 64, "background": "procedural"}})
    final = jobs.run_foreground(ws, "generate", params)
    assert final["status"] == "done", final.get("error")
    with ws.connect() as db:
        items = load_items(db, None)
        real = store_images.list_images(db, kinds=["real"])
        real_train = _with_persons(db, [r for r in real if r["split"] == "train"])
    return {"ws": ws, "root": root, "items": items, "real": real, "real_train": real_train}


def _tiny_clip(tmp: Path) -> tuple[str, str]:
    import open_clip
    import torch

    cfg_dir = tmp / "clipcfg"
    cfg_dir.mkdir(exist_ok=True)
    (cfg_dir / "tiny-clip-contract.json").write_text(json.dumps({
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}))
    open_clip.add_model_config(cfg_dir)
    ckpt = tmp / "tiny-clip.pt"
    torch.save(open_clip.create_model("tiny-clip-contract", pretrained=None).state_dict(), ckpt)
    return "tiny-clip-contract", str(ckpt)


def run_generator_copy_paste(tiny):
    from engine.component import Resources
    from engine.generate import GenerationRequest

    gen = registry.build("generator", "copy_paste", {"width": 64, "height": 64, "background": "procedural"})
    gen.setup(Resources())
    from engine import media

    im = tiny["real_train"][0]
    anchor = {**im["persons"][0], "path": tiny["ws"].path(media.image_relpath(im["sha256"], im["ext"]))}
    out = gen.generate([GenerationRequest(0, 5, 64, 64, anchors=[anchor])])
    assert len(out) == 1 and out[0].image.shape == (64, 64, 3) and out[0].lineage["params"] == gen.params()


def run_generator_pose_warp(tiny):
    from engine import media
    from engine.component import Resources
    from engine.generate import GenerationRequest
    from engine.generate.pose_sources import PoseSourceConfig, sample_pose

    anchors = [{**p, "image_id": im["id"], "width": im["width"], "height": im["height"],
                "path": tiny["ws"].path(media.image_relpath(im["sha256"], im["ext"]))}
               for im in tiny["real_train"][:3] for p in im["persons"][:1]]
    gen = registry.build("generator", "pose_warp", {"width": 64, "height": 64, "background": "procedural"})
    gen.setup(Resources())
    pose = sample_pose(anchors, np.random.default_rng(0), PoseSourceConfig(min_keypoints=1), 64, 64)
    out = gen.generate([GenerationRequest(0, 5, 64, 64, pose=pose, anchors=anchors)])
    assert len(out) == 1 and out[0].image.shape == (64, 64, 3) and out[0].lineage["params"] == gen.params()


def run_generator_controlnet(tiny):
    from engine.component import Resources
    from engine.generate import GenerationRequest
    from engine.generate.pose_sources import PoseSample
    from tests.tiny_models import save_tiny_controlnet_pipeline

    base, cn = save_tiny_controlnet_pipeline(tiny["root"] / "tiny-sd")
    gen = registry.build("generator", "controlnet", {"base": str(base), "controlnet": str(cn), "steps": 1,
                                                     "width": 64, "height": 64, "batch_size": 1, "device": "cpu",
                                                     "allow_cpu": True})
    seen = []
    gen.setup(Resources(progress=lambda d, t, m: seen.append((d, t))))
    k = np.zeros((17, 3))
    k[:, 0], k[:, 1], k[:, 2] = np.linspace(10, 54, 17), np.linspace(8, 56, 17), 2
    out = gen.generate([GenerationRequest(0, 3, 64, 64, pose=PoseSample(k, {}, [1], [1], {}), prompt="a person")])
    assert len(out) == 1 and out[0].image.shape == (64, 64, 3) and seen == [(1, 1)]


TINY_STAGE_PARAMS = {"quality": {"sharpness": 1.0}, "realism": {"threshold": 10.0},
                     "pose_consistency": {"threshold": 0.0}}


def run_stage(name):
    def run(tiny):
        from engine import assets
        from engine.curate.base import StageContext
        from engine.curate.teacher import Teacher

        ws = tiny["ws"]
        with ws.connect() as db:
            ctx = StageContext(ws=ws, db=db, embedder=registry.build("embedder", "effnet-lite0"),
                               teacher=Teacher(str(assets.resolve("yolo11n-pose")), "cpu", imgsz=320),
                               real_train=tiny["real_train"], real_all=tiny["real"])
            stage = registry.build("stage", name, TINY_STAGE_PARAMS.get(name, {}))
            record = stage.calibrate(ctx)
            rows = stage.run(ctx, tiny["items"])
        json.dumps(record)                                            # stored with the run
        assert sorted(r["image_id"] for r in rows) == sorted(it["id"] for it in tiny["items"])
        assert {r["status"] for r in rows} <= {"pass", "fail", "unavailable"}
    return run


def run_embedder_effnet(tiny):
    emb = registry.build("embedder", "effnet-lite0", {"batch_size": 2})
    emb.setup()
    v = emb.embed([np.zeros((40, 50, 3), np.uint8), np.full((30, 20, 3), 200, np.uint8),
                   np.ones((64, 64, 3), np.uint8)])
    assert v.shape == (3, 1280) and np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)


def run_embedder_open_clip(tiny):
    model, ckpt = _tiny_clip(tiny["root"])
    emb = registry.build("embedder", "open_clip", {"model": model, "pretrained": ckpt})
    emb.setup()
    assert emb.embed([np.zeros((40, 50, 3), np.uint8)]).shape == (1, 16)


def run_selector_greedy(tiny):
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 4))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    order = registry.build("selector", "greedy", {"uncertainty": 1.0, "diversity": 0.0}).order(
        np.arange(6.0), emb, rng.normal(size=(6, 34)), budget=3)
    assert [i for i, _, _ in order] == [5, 4, 3]


TINY_RUNS = {
    ("generator", "copy_paste"): run_generator_copy_paste,
    ("generator", "controlnet"): run_generator_controlnet,
    ("generator", "pose_warp"): run_generator_pose_warp,
    **{("stage", n): run_stage(n) for n in ("quality", "duplicates", "realism", "clip", "pose_consistency")},
    ("embedder", "effnet-lite0"): run_embedder_effnet,
    ("embedder", "open_clip"): run_embedder_open_clip,
    ("selector", "greedy"): run_selector_greedy,
}


def test_every_built_in_component_has_a_tiny_run():
    missing = sorted(set(BUILT_IN) - set(TINY_RUNS))
    assert not missing, f"add a tiny setup/run for {missing} to TINY_RUNS in tests/test_contract.py"


@pytest.mark.parametrize("kind,name", sorted(TINY_RUNS))
def test_setup_and_run_on_tiny_inputs(tiny, kind, name):
    TINY_RUNS[(kind, name)](tiny)


# ---------------------------------------------------------------------------------------------------- other kinds

def test_job_kinds_keep_the_job_interface():
    import inspect

    from engine import jobs

    for name, kind in jobs.kinds().items():
        assert isinstance(kind.title, str) and kind.title and isinstance(kind.resumable, bool), name
        assert list(inspect.signature(kind.fn).parameters)[:2] == ["ctx", "params"], name


def test_every_import_format_parses_a_tiny_dataset(tmp_path):
    from scipy.io import savemat

    from engine.io import parse

    lsp = tmp_path / "lsp"
    write_image(lsp / "images/im0001.jpg", size=(100, 100))
    joints = np.zeros((3, 14, 1))
    joints[0, :, 0] = joints[1, :, 0] = np.linspace(10, 90, 14)
    savemat(str(lsp / "joints.mat"), {"joints": joints})
    write_image(tmp_path / "plain" / "a.jpg")
    inputs = {"coco": make_coco(tmp_path / "coco", n=2), "yolo-pose": make_yolo(tmp_path / "yolo", n=2),
              "lsp": lsp, "images": tmp_path / "plain"}
    assert set(registry.names("import_format")) >= set(inputs)
    for fmt in registry.names("import_format"):
        if fmt not in inputs:
            continue                                              # a plugin format: its package tests it
        parsed = parse(fmt, inputs[fmt])
        assert len(parsed.records) >= 1, fmt


def test_every_export_format_writes_a_tiny_workspace(tmp_path, ws):
    from engine.io import exporter, parse
    from engine.io.common import run_import

    run_import(ws, parse("coco", make_coco(tmp_path / "coco", n=2)), split="train")
    for fmt in registry.names("export_format"):
        out = tmp_path / f"out-{fmt}"
        summary = exporter(fmt)(ws, out, splits=["train"], sources=["ground_truth"], kinds=None, progress=None,
                                synthetic="accepted")
        assert out.exists() and any(out.rglob("*")), fmt
        assert summary, fmt


def test_every_pipeline_step_resolves_a_minimal_spec(ws):
    minimal = {"generate": {"generator_params": {"background": "procedural"}}, "curate": {}, "select": {},
               "review": {}, "experiment": {"arms": [{"name": "real-only", "real": 1}]}, "report": {"out": "r"}}
    for name in registry.names("pipeline_step"):
        step = registry.get("pipeline_step", name)
        assert isinstance(step.resolve(ws, dict(minimal.get(name, {})), {"name": "local"}), dict), name
        assert callable(step.run)


def test_kinds_and_names_are_described():
    described = registry.describe()
    assert set(described) == set(registry.KINDS)
    assert all(described[k] for k in registry.KINDS), "every kind has at least one built-in"
    cp = next(r for r in described["generator"] if r["name"] == "copy_paste")
    assert {p["name"] for p in cp["params"]} >= {"width", "max_background_tries"}


def test_a_component_class_without_a_config_is_refused():
    with pytest.raises(RealcalError, match="has no Config"):
        registry.register("stage", "broken")(type("Broken", (), {}))
    assert "broken" not in registry.names("stage")


def test_registry_refuses_an_unknown_kind_and_name():
    with pytest.raises(RealcalError, match="unknown component kind"):
        registry.names("widget")
    with pytest.raises(RealcalError, match="unknown generator 'nope'; valid names: controlnet, copy_paste, pose_warp"):
        registry.get("generator", "nope")


def test_component_config_types_are_checked_on_construction():
    @dataclasses.dataclass(frozen=True)
    class C(component.Config):
        n: int = 1
        x: float = 0.5
        mode: Literal["a", "b"] = "a"
        pair: tuple[int, int] = (1, 2)
        spec: float | dict = 0.1
        path: str | None = None

    assert C.from_dict({"n": 3.0, "x": 2, "pair": [3, 4], "spec": {"p": 1}}) == C(3, 2.0, "a", (3, 4), {"p": 1})
    for bad, msg in (({"n": 1.5}, "n: expected an integer"), ({"n": True}, "n: expected an integer"),
                     ({"mode": "c"}, "mode: 'c' is not one of"), ({"pair": [1]}, "pair: expected 2 values"),
                     ({"x": "fast"}, "x: expected a number"), ({"path": 3}, "path: expected text")):
        with pytest.raises(RealcalError, match=msg):
            C.from_dict(bad, where="demo")


def test_components_command_lists_every_kind_with_parameters():
    from click.testing import CliRunner

    from engine.cli import main

    r = CliRunner().invoke(main, ["components", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)["components"]
    assert set(data) == set(registry.KINDS)
    assert "copy_paste" in {c["name"] for c in data["generator"]}
    r = CliRunner().invoke(main, ["components", "--kind", "stage"])
    assert r.exit_code == 0 and "pose_consistency" in r.output and "threshold:" in r.output
    r = CliRunner().invoke(main, ["components", "--kind", "widget"])
    assert r.exit_code == 1 and "unknown component kind" in r.output
