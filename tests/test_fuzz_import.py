"""Fuzz: the importers and the workspace opener meet malformed input with one-line errors, never a traceback.

A seeded, structure-aware generator mutates small valid inputs: the values of a COCO annotation file, the
data.yaml and label lines of a YOLO-pose folder, the ``joints`` matrix of an LSP ``joints.mat`` (and the
raw bytes of all three), and the bytes of a workspace's ``realcal.db``. Each case must either import or
fail with a :class:`~engine.errors.RealcalError` that leaves the workspace as it was; the opener must
open the database or refuse it with a ``RealcalError``, and ``realcal status`` on it must end with an
``error:`` line, never a traceback.

The run is bounded by time: ``REALCAL_FUZZ_SECONDS`` per target (default 1); ``REALCAL_FUZZ_SEED``
picks the stream (default 0). Case ``i`` of a target is built from ``(seed, target, i)`` alone, so the
seed and case number a failure names reproduce it (``REALCAL_FUZZ_SEED=S``, then ``make_case``).
``REALCAL_FUZZ_REPORT=FILE`` appends each target's figures (cases tried, failures, distinct tracebacks)
to FILE as JSON lines.
"""
from __future__ import annotations

import copy
import json
import os
import random
import shutil
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from scipy.io import savemat

from engine.errors import RealcalError
from tests.helpers import make_coco, make_yolo, write_image

SECONDS = float(os.environ.get("REALCAL_FUZZ_SECONDS", "1"))
SEED = int(os.environ.get("REALCAL_FUZZ_SEED", "0"))
REPORT = os.environ.get("REALCAL_FUZZ_REPORT")
REPO = Path(__file__).resolve().parent.parent

BIG = int("9" * 400)
NASTY: list[Any] = [
    BIG, -BIG, 2 ** 63, -1, 0, 1, 3, 17, 51, 1e308, -1e308, float("inf"), float("-inf"), float("nan"), 0.5,
    True, False, None, "", "x", "0", "person", "nose", "1e400", "nan", "../../outside.jpg", "/etc/passwd",
    "a\x00b", "é" * 3, "x" * 5000, [], {}, [1, 2], [[1, 2], [3]], {"a": 1}, {"id": [1]}, [None] * 51,
    ["a"] * 51, [BIG] * 51, list(range(17)), [[[[[]]]]],
]


def _nasty(rng: random.Random) -> Any:
    return copy.deepcopy(rng.choice(NASTY))


# ----------------------------------------------------------------------------- tree and byte mutations

def _nodes(tree: Any, path: tuple = ()) -> list[tuple]:
    """Every (path) into a JSON-like tree, the root included."""
    out = [path]
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _nodes(v, path + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _nodes(v, path + (i,))
    return out


def _get(tree: Any, path: tuple) -> Any:
    for p in path:
        tree = tree[p]
    return tree


def mutate_tree(tree: Any, rng: random.Random, n: int) -> tuple[Any, list[str]]:
    """``n`` random edits of a JSON-like tree: replace a value, delete or duplicate an entry, change a type."""
    tree = copy.deepcopy(tree)
    done = []
    for _ in range(n):
        paths = _nodes(tree)
        path = rng.choice(paths)
        op = rng.choice(["replace", "replace", "replace", "delete", "duplicate", "stringify", "wrap",
                         "add_key"])
        if not path:
            if op == "replace":
                tree = _nasty(rng)
                done.append(f"root = {tree!r:.60}")
            continue
        parent, key = _get(tree, path[:-1]), path[-1]
        if op == "replace":
            parent[key] = _nasty(rng)
        elif op == "delete":
            del parent[key]
        elif op == "duplicate" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        elif op == "stringify":
            parent[key] = str(parent[key])[:200]
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "add_key" and isinstance(parent[key], dict):
            parent[key][rng.choice(["id", "keypoints", "split", "bbox", "image_id", "x"])] = _nasty(rng)
        done.append(f"{op} {'/'.join(map(str, path))[:80]}")
    return tree, done


def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    op = rng.choice(["flip", "truncate", "insert", "zero_run"])
    b = bytearray(data)
    if not b:
        return bytes(rng.getrandbits(8) for _ in range(16)), "random"
    at = rng.randrange(len(b))
    if op == "flip":
        for _ in range(rng.randint(1, 8)):
            b[rng.randrange(len(b))] = rng.getrandbits(8)
    elif op == "truncate":
        del b[at:]
    elif op == "insert":
        b[at:at] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 32)))
    else:
        n = rng.randint(1, 4096)
        b[at:at + n] = bytes(min(n, len(b) - at))
    return bytes(b), f"bytes {op} at {at}"


def _dump_json(tree: Any) -> bytes:
    return json.dumps(tree, allow_nan=True).encode("utf-8", "surrogatepass")


# ----------------------------------------------------------------------------- the cases

def _coco_case(rng: random.Random, folder: Path) -> tuple[Path, dict, list[str]]:
    path = make_coco(folder, n=2, seed=rng.randrange(10 ** 6))
    tree = json.loads(path.read_text())
    tree, how = mutate_tree(tree, rng, rng.randint(1, 3))
    data = _dump_json(tree)
    if rng.random() < 0.15:
        data, what = mutate_bytes(data, rng)
        how.append(what)
    path.write_bytes(data)
    return path, {}, how


def _yolo_case(rng: random.Random, folder: Path) -> tuple[Path, dict, list[str]]:
    path = make_yolo(folder, n=2)
    if rng.random() < 0.5:                      # fresh pixels, so that some cases import rather than skip
        for im in folder.glob("images/*/*.jpg"):
            write_image(im, seed=rng.randrange(10 ** 6))
    how = []
    if rng.random() < 0.6:
        tree = yaml.safe_load(path.read_text())
        tree, how = mutate_tree(tree, rng, rng.randint(1, 3))
        path.write_text(yaml.safe_dump(tree, allow_unicode=False))
    if rng.random() < 0.5 or not how:
        label = rng.choice(sorted(folder.glob("labels/*/*.txt")))
        tokens = label.read_text().split()
        for _ in range(rng.randint(1, 3)):
            i = rng.randrange(len(tokens) + 1)
            op = rng.choice(["replace", "delete", "insert"])
            tok = rng.choice(["nan", "inf", "-inf", "1e400", "-0", "abc", "9" * 400, "", "0x10", "1,5",
                              "2", "0", "-1", "17", "\x00", "1e-400", "١"])
            if op == "replace" and i < len(tokens):
                tokens[i] = tok
            elif op == "delete" and i < len(tokens):
                del tokens[i]
            else:
                tokens.insert(i, tok)
            how.append(f"label {label.name} {op} {i} {tok[:12]!r}")
        sep = rng.choice([" ", "\n", "\t", " \r\n"])
        label.write_text(sep.join(tokens) + "\n", encoding="utf-8")
    if rng.random() < 0.1:
        data, what = mutate_bytes(path.read_bytes(), rng)
        path.write_bytes(data)
        how.append(f"data.yaml {what}")
    return path, {}, how


def _lsp_case(rng: random.Random, folder: Path) -> tuple[Path, dict, list[str]]:
    folder.mkdir(parents=True)
    n = rng.randint(0, 3)
    layout = rng.choice(["lspet", "lsp"])
    joints = np.random.default_rng(rng.randrange(10 ** 6)).uniform(0, 60, (14, 3, n))
    joints[:, 2] = np.random.default_rng(rng.randrange(10 ** 6)).integers(0, 2, (14, n))
    if layout == "lsp":
        joints = np.transpose(joints, (1, 0, 2))
    for i in range(n):
        write_image(folder / "images" / (f"im{i + 1:05d}.jpg" if layout == "lspet" else f"im{i + 1:04d}.jpg"),
                    seed=rng.randrange(10 ** 6))
    how = [f"{layout} n={n}"]
    op = rng.choice(["values", "dtype", "shape", "name", "extra", "none"])
    value: Any = joints
    if op == "values" and joints.size:
        flat = joints.reshape(-1)
        for _ in range(rng.randint(1, 4)):
            flat[rng.randrange(flat.size)] = rng.choice([np.nan, np.inf, -np.inf, 1e308, -5.0, 0.5, 2.0])
    elif op == "dtype":
        kind = rng.choice(["str", "complex", "object", "bool", "int8", "uint8", "int64", "float32"])
        if kind == "str":
            value = np.full(joints.shape, "ab")
        elif kind == "complex":
            value = joints + 1j
        elif kind == "object":
            value = np.empty(joints.shape, dtype=object)
            for idx in np.ndindex(joints.shape):
                value[idx] = rng.choice([np.array([1.0, 2.0]), "s", 3.0])
        elif kind == "bool":
            value = joints > 30
        else:
            value = joints.astype(kind)
        how.append(f"dtype {kind}")
    elif op == "shape":
        shape = rng.choice([(14, 3), (3, 14), (14, 3, 1, 1), (16, 3, 2), (14, 2, 2), (0, 0, 0), (14, 3, 0), (1,)])
        value = np.zeros(shape)
        how.append(f"shape {shape}")
    elif op == "extra":
        how.append("a struct beside joints")
    contents: dict[str, Any] = {"joints" if op != "name" else "Joints": value}
    if op == "extra":
        contents["info"] = {"a": 1, "b": "text"}
    mat = folder / "joints.mat"
    try:
        savemat(str(mat), contents)
    except Exception:  # a combination scipy itself cannot write: write the plain matrix instead
        savemat(str(mat), {"joints": joints})
        how.append("(unwritable; plain)")
    if rng.random() < 0.15:
        data, what = mutate_bytes(mat.read_bytes(), rng)
        mat.write_bytes(data)
        how.append(what)
    return folder, {}, how


def _images_case(rng: random.Random, folder: Path) -> tuple[Path, dict, list[str]]:
    how = []
    for i in range(rng.randint(1, 3)):
        fmt, ext = rng.choice([("JPEG", "jpg"), ("PNG", "png"), ("BMP", "bmp"), ("WEBP", "webp"),
                               ("TIFF", "tif")])
        p = write_image(folder / f"im{i}.{ext}", size=(rng.randint(1, 80), rng.randint(1, 80)),
                        seed=rng.randrange(10 ** 6), fmt=fmt)
        if rng.random() < 0.5:
            data, what = mutate_bytes(p.read_bytes(), rng)
            p.write_bytes(data)
            how.append(f"{p.name} {what}")
    return folder, {}, how


IMPORTERS = {"coco": _coco_case, "yolo-pose": _yolo_case, "lsp": _lsp_case, "images": _images_case}


def make_case(target: str, seed: int, i: int, folder: Path) -> tuple[Path, dict, list[str]]:
    """Case ``i`` of ``target``: built from (seed, target, i) only."""
    return IMPORTERS[target](random.Random(f"{seed}:{target}:{i}"), folder)


# ----------------------------------------------------------------------------- running and recording

def _signature(exc: BaseException) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(REPO))
              and not any(part in f.filename for part in ("/tests/", "/.venv/", "site-packages"))]
    where = f"{Path(frames[-1].filename).relative_to(REPO)}:{frames[-1].lineno}" if frames else "?"
    return f"{type(exc).__name__} at {where}"


class Tally:
    def __init__(self, target: str):
        self.target, self.cases, self.failures = target, 0, []

    def fail(self, i: int, how: list[str], problem: str) -> None:
        self.failures.append((i, how, problem))

    def finish(self) -> None:
        signatures: dict[str, int] = {}
        for _, _, problem in self.failures:
            key = problem.split(" | ")[0]
            signatures[key] = signatures.get(key, 0) + 1
        if REPORT:
            with open(REPORT, "a") as fh:
                fh.write(json.dumps({"target": self.target, "seed": SEED, "seconds": SECONDS,
                                     "cases": self.cases, "failed_cases": len({f[0] for f in self.failures}),
                                     "distinct": signatures}) + "\n")
        if self.failures:
            lines = [f"{len({f[0] for f in self.failures})} of {self.cases} {self.target} cases (seed {SEED}) "
                     f"failed; {len(signatures)} distinct:"]
            lines += [f"  {n} x {sig}" for sig, n in sorted(signatures.items(), key=lambda kv: -kv[1])]
            lines += [f"  e.g. case {i}: {'; '.join(how)} -> {problem}" for i, how, problem in self.failures[:5]]
            pytest.fail("\n".join(lines))


def _state(ws) -> tuple:
    files = sorted(p.name for sub in ("images", "thumbs") for p in (ws.root / sub).rglob("*") if p.is_file())
    with ws.connect() as db:
        counts = tuple(db.execute(f"SELECT COUNT(*) FROM [{t}]").fetchone()[0]
                       for t in ("images", "persons", "batches"))
    return tuple(files), counts


@pytest.mark.parametrize("target", list(IMPORTERS))
def test_importers_never_raise_a_traceback(tmp_path, target):
    from engine.io import parse
    from engine.io.common import run_import
    from engine.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    tally = Tally(target)
    deadline = time.monotonic() + SECONDS
    i = 0
    while time.monotonic() < deadline:
        folder = tmp_path / f"case{i}"
        path, options, how = make_case(target, SEED, i, folder)
        before = _state(ws)
        try:
            run_import(ws, parse(target, path, **options))
        except RealcalError:
            if _state(ws) != before:
                tally.fail(i, how, "changed | a refused import changed the workspace")
        except Exception as exc:
            tally.fail(i, how, f"{_signature(exc)} | {exc!s:.200}")
        shutil.rmtree(folder, ignore_errors=True)
        tally.cases += 1
        i += 1
    tally.finish()


@pytest.fixture(scope="module")
def good_db(tmp_path_factory) -> bytes:
    """The bytes of a small, valid, checkpointed workspace database with images, persons and a job."""
    from engine import jobs
    from engine.io import parse
    from engine.io.common import run_import
    from engine.workspace import Workspace

    root = tmp_path_factory.mktemp("good")
    ws = Workspace.init(root / "ws")
    run_import(ws, parse("coco", make_coco(root / "d", n=3)))
    jobs.submit(ws, "selftest", {"steps": 1})
    with ws.connect() as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return ws.db_path.read_bytes()


def _opener_case(rng: random.Random, root: Path, good: bytes) -> list[str]:
    from engine.workspace import DB_NAME

    root.mkdir(parents=True)
    (root / "images").mkdir()
    db = root / DB_NAME
    op = rng.choice(["bytes", "bytes", "bytes", "page", "garbage", "empty", "folder", "header", "wal"])
    if op == "bytes":
        data, what = mutate_bytes(good, rng)
        db.write_bytes(data)
        return [what]
    if op == "page":
        page = 4096
        n = len(good) // page
        k = rng.randrange(max(n, 1))
        data = bytearray(good)
        end = min((k + 1) * page, len(data))
        data[k * page:end] = bytes(rng.getrandbits(8) for _ in range(end - k * page))
        db.write_bytes(bytes(data))
        return [f"page {k} random"]
    if op == "garbage":
        db.write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 20000))))
    elif op == "empty":
        db.write_bytes(b"")
    elif op == "folder":
        db.mkdir()
    elif op == "header":
        db.write_bytes(good[:100] + bytes(rng.getrandbits(8) for _ in range(len(good) - 100)))
    else:
        db.write_bytes(good)
        (root / (DB_NAME + "-wal")).write_bytes(bytes(rng.getrandbits(8) for _ in range(rng.randint(32, 9000))))
    return [op]


def test_workspace_opener_never_raises_a_traceback(tmp_path, good_db):
    from engine.cli import main
    from engine.workspace import Workspace

    tally = Tally("opener")
    runner = CliRunner()
    deadline = time.monotonic() + SECONDS
    i = 0
    while time.monotonic() < deadline:
        root = tmp_path / f"case{i}"
        how = _opener_case(random.Random(f"{SEED}:opener:{i}"), root, good_db)
        try:
            with Workspace.open(root).connect():
                pass
        except RealcalError:
            pass
        except Exception as exc:
            tally.fail(i, how, f"open: {_signature(exc)} | {exc!s:.200}")
        result = runner.invoke(main, ["-w", str(root), "status", "--json"])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            tally.fail(i, how, f"status: {_signature(result.exception)} | {result.exception!s:.200}")
        elif result.exit_code not in (0, 1) or (result.exit_code == 1 and not result.output.startswith("error: ")):
            tally.fail(i, how, f"status: exit {result.exit_code} | {result.output[:200]}")
        shutil.rmtree(root, ignore_errors=True)
        tally.cases += 1
        i += 1
    tally.finish()


def test_the_generator_makes_both_good_and_bad_input(tmp_path):
    """The fuzzer is not vacuous: some COCO cases import and some are refused."""
    from engine.io import parse

    outcomes = set()
    for i in range(40):
        path, _, _ = make_case("coco", 0, i, tmp_path / f"c{i}")
        try:
            parse("coco", path)
            outcomes.add("parsed")
        except RealcalError:
            outcomes.add("refused")
        except Exception:
            outcomes.add("other")
    assert {"parsed", "refused"} <= outcomes
