"""Races between writers of one workspace, on real LSPET images: is every row's file there, and is
every file some row's?

    .venv/bin/python bench/integrity_races.py [--trials 10] [--images 300] [--case NAME ...]
                                              [--repo CHECKOUT] [--json OUT]

Each trial builds a fresh workspace and runs ``realcal`` processes against it at the same time
(started with a random offset, so the interleavings vary between trials):

* ``strict-abort``: an import with ``--strict`` whose ids file names one image that is missing
  (it stages every other image, then aborts), while a second import takes the same images;
* ``overlap``: two imports of overlapping id sets (half the images in common);
* ``delete-reimport``: ``batch delete`` of an imported batch while the same images are imported again
  (``--delete-images``, default 1,000: the window in which a file can be lost is short);
* ``sigint`` / ``sigterm`` / ``sighup`` / ``sigkill``: the signal sent to an import part-way through
  staging, then ``realcal gc`` (where the checkout has it).

After each trial it counts, from the database (read-only, never migrated) and the image folders:
rows whose image file or thumbnail is missing, files no row accounts for (strays, temporary files
included), and errors (a process that ended with a traceback or an exit status the case does not
expect, or an import that left fewer rows than it should). ``--repo`` runs another checkout's code
(for example the code before a change) with this script's measurements.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlite_utils  # noqa: E402

from bench._paths import offline  # noqa: E402
from store import images as store_images  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
LSPET = REPO.parent / "shared" / "data" / "lspet"
MISSING_ID = "im09000.jpg"          # in joints.mat, but the image is not in the folder
CASES = ("strict-abort", "overlap", "delete-reimport", "sigint", "sigterm", "sighup", "sigkill")
SIGNALS = {"sigint": signal.SIGINT, "sigterm": signal.SIGTERM, "sighup": signal.SIGHUP, "sigkill": signal.SIGKILL}


@dataclass
class Outcome:
    missing: int = 0              # rows whose image file or thumbnail is missing
    strays: int = 0               # files no row accounts for
    strays_after_gc: int | None = None
    errors: int = 0
    overlapped: bool | None = None    # delete-reimport: the deletion landed while the re-import staged
    notes: list[str] = field(default_factory=list)


@dataclass
class CaseResult:
    case: str
    trials: int = 0
    trials_with_loss: int = 0
    missing: int = 0
    strays: int = 0
    strays_after_gc: int | None = None
    errors: int = 0
    overlapped: int | None = None
    notes: list[str] = field(default_factory=list)


class Runner:
    def __init__(self, repo: Path):
        self.repo = repo
        path = os.pathsep.join(p for p in (str(repo), os.environ.get("PYTHONPATH", "")) if p)
        self.env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}

    def start(self, ws: Path, *args: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "engine", "-w", str(ws), *args], cwd=self.repo,
                                env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                preexec_fn=default_signals)

    def run(self, ws: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "engine", "-w", str(ws), *args], cwd=self.repo,
                              env=self.env, capture_output=True, text=True)

    def has_gc(self) -> bool:
        return (self.repo / "engine" / "cli" / "maintenance.py").exists()


def default_signals() -> None:
    """In the child: the signals this script sends act as they would from a terminal (a shell may have
    started this script with SIGINT or SIGHUP ignored, which children would inherit)."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def scan(ws: Path) -> tuple[int, int]:
    """(rows whose image or thumbnail is missing, files no row accounts for)."""
    conn = sqlite3.connect(f"file:{ws / 'realcal.db'}?mode=ro", uri=True)
    try:
        rows = store_images.list_images(sqlite_utils.Database(conn))
    finally:
        conn.close()
    wanted_images = {f"{r['sha256']}.{r['ext']}" for r in rows}
    wanted_thumbs = {f"{r['sha256']}.jpg" for r in rows}
    missing = 0
    for r in rows:
        if not (ws / "images" / r["sha256"][:2] / f"{r['sha256']}.{r['ext']}").is_file():
            missing += 1
        elif not (ws / "thumbs" / r["sha256"][:2] / f"{r['sha256']}.jpg").is_file():
            missing += 1
    strays = 0
    for folder, wanted in (("images", wanted_images), ("thumbs", wanted_thumbs)):
        for _, _, files in os.walk(ws / folder):
            strays += sum(1 for f in files if f not in wanted)
    return missing, strays


def count_rows(ws: Path) -> int:
    conn = sqlite3.connect(f"file:{ws / 'realcal.db'}?mode=ro", uri=True)
    try:
        return store_images.count_images(sqlite_utils.Database(conn))
    finally:
        conn.close()


def count_files(folder: Path) -> int:
    n = 0
    try:
        for d in os.scandir(folder):
            if d.is_dir():
                n += sum(1 for _ in os.scandir(d.path))
    except FileNotFoundError:
        pass
    return n


def bad(rc: int, err: str, expected: set[int]) -> int:
    return int(rc not in expected or "Traceback" in err)


def write_ids(path: Path, ids: list[str]) -> Path:
    path.write_text("\n".join(ids) + "\n")
    return path


def trial(runner: Runner, case: str, tmp: Path, ids: list[str], spare: list[str], rng: random.Random) -> Outcome:
    ws = tmp / "ws"
    init = runner.run(ws, "init")
    if init.returncode:
        raise SystemExit(f"init failed: {init.stderr}")
    out = Outcome()
    lsp = str(LSPET)
    if case == "strict-abort":
        a_ids = write_ids(tmp / "a.txt", ids + [MISSING_ID])
        b_ids = write_ids(tmp / "b.txt", ids)
        a = runner.start(ws, "import", "--format", "lsp", lsp, "--ids", str(a_ids), "--strict", "--split", "train")
        time.sleep(rng.uniform(0.0, 0.5))
        b = runner.start(ws, "import", "--format", "lsp", lsp, "--ids", str(b_ids), "--split", "train")
        (rc_a, err_a), (rc_b, err_b) = finish(a), finish(b)
        out.errors += bad(rc_a, err_a, {1}) + bad(rc_b, err_b, {0})
        rows = count_rows(ws)
        if rows != len(ids):
            out.errors += 1
            out.notes.append(f"{rows} rows, expected {len(ids)}")
    elif case == "overlap":
        half = len(ids) // 2
        a_set, b_set = sorted(ids), sorted(ids[half:] + spare[:half])
        a = runner.start(ws, "import", "--format", "lsp", lsp, "--ids", str(write_ids(tmp / "a.txt", a_set)),
                         "--split", "train")
        time.sleep(rng.uniform(0.0, 0.3))
        b = runner.start(ws, "import", "--format", "lsp", lsp, "--ids", str(write_ids(tmp / "b.txt", b_set)),
                         "--split", "train")
        (rc_a, err_a), (rc_b, err_b) = finish(a), finish(b)
        out.errors += bad(rc_a, err_a, {0}) + bad(rc_b, err_b, {0})
        expected = len(set(a_set) | set(b_set))
        rows = count_rows(ws)
        if rows != expected:
            out.errors += 1
            out.notes.append(f"{rows} rows, expected {expected}")
    elif case == "delete-reimport":
        ids_file = write_ids(tmp / "a.txt", ids)
        first = runner.run(ws, "import", "--format", "lsp", lsp, "--ids", str(ids_file), "--split", "train")
        if first.returncode:
            raise SystemExit(f"setup import failed: {first.stderr}")
        b = runner.start(ws, "import", "--format", "lsp", lsp, "--ids", str(ids_file), "--split", "train")
        time.sleep(rng.uniform(0.3, 1.5))
        d = runner.start(ws, "batch", "delete", "1", "--yes")
        (rc_b, err_b), (rc_d, err_d) = finish(b), finish(d)
        out.errors += bad(rc_b, err_b, {0}) + bad(rc_d, err_d, {0})
        reimported = count_rows(ws)     # batch 1 is gone: these rows are the re-import's
        out.overlapped = 0 < reimported < len(ids)
        out.notes.append(f"the re-import kept {reimported} of {len(ids)} images")
    else:
        ids_file = write_ids(tmp / "a.txt", ids)
        p = runner.start(ws, "import", "--format", "lsp", lsp, "--ids", str(ids_file), "--split", "train")
        target = rng.randint(10, int(len(ids) * 0.8))
        deadline = time.time() + 120
        while count_files(ws / "images") < target and p.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        if p.poll() is None:
            p.send_signal(SIGNALS[case])
        else:
            out.notes.append("the import finished before the signal")
        rc, err = finish(p)
        if "Traceback" in err and "KeyboardInterrupt" not in err:
            out.errors += 1
        if count_rows(ws):
            out.notes.append(f"the import was not stopped (exit status {rc})")
        out.missing, out.strays = scan(ws)
        if runner.has_gc():
            gc = runner.run(ws, "gc")
            out.errors += bad(gc.returncode, gc.stderr, {0})
            _, out.strays_after_gc = scan(ws)
        return out
    out.missing, out.strays = scan(ws)
    return out


def run_case(runner: Runner, case: str, trials: int, n_images: int, seed: int) -> CaseResult:
    """``trials`` fresh workspaces; each draws its own ``n_images`` LSPET ids."""
    res = CaseResult(case)
    for t in range(trials):
        rng = random.Random(f"{seed}:{case}:{t}")
        drawn = [f"im{i:05d}.jpg" for i in rng.sample(range(1, 4001), n_images + n_images // 2)]
        ids, spare = sorted(drawn[:n_images]), drawn[n_images:]
        with tempfile.TemporaryDirectory(prefix="realcal-races-") as tmp:
            o = trial(runner, case, Path(tmp), ids, spare, rng)
        res.trials += 1
        res.trials_with_loss += int(o.missing > 0)
        res.missing += o.missing
        res.strays += o.strays
        if o.strays_after_gc is not None:
            res.strays_after_gc = (res.strays_after_gc or 0) + o.strays_after_gc
        res.errors += o.errors
        if o.overlapped is not None:
            res.overlapped = (res.overlapped or 0) + int(o.overlapped)
        res.notes += [f"trial {t}: {n}" for n in o.notes]
        print(f"  {case} trial {t}: missing {o.missing}, strays {o.strays}"
              + (f" (after gc {o.strays_after_gc})" if o.strays_after_gc is not None else "")
              + f", errors {o.errors}" + (f" [{'; '.join(o.notes)}]" if o.notes else ""), flush=True)
    return res


def table(results: list[CaseResult]) -> str:
    lines = [f"{'case':<16} {'trials':>6} {'rows w/o file':>14} {'trials w/ loss':>15} {'stray files':>12} "
             f"{'strays after gc':>16} {'errors':>7}"]
    for r in results:
        gc = "n/a" if r.strays_after_gc is None else str(r.strays_after_gc)
        lines.append(f"{r.case:<16} {r.trials:>6} {r.missing:>14} {r.trials_with_loss:>15} {r.strays:>12} "
                     f"{gc:>16} {r.errors:>7}")
    lines += [f"{r.case}: in {r.overlapped} of {r.trials} trials the deletion landed while the re-import staged "
              f"(it kept some of the images, not all)" for r in results if r.overlapped is not None]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--images", type=int, default=300, help="images per import (at most 2000)")
    ap.add_argument("--delete-images", type=int, default=1000,
                    help="images in the delete-reimport case, whose race window is a few milliseconds per "
                         "hundred images (default 1000)")
    ap.add_argument("--case", dest="cases", action="append", choices=CASES, help="repeatable; default all")
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose code runs (default: this one)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="write the results here as JSON")
    args = ap.parse_args()
    if not (LSPET / "joints.mat").exists():
        sys.exit(f"LSPET not found at {LSPET} (expected joints.mat and images/)")
    if not (2 <= args.images <= 2000 and 2 <= args.delete_images <= 2000):
        sys.exit("--images and --delete-images must be between 2 and 2000")
    offline()
    runner = Runner(args.repo.resolve())
    print(f"code under test: {runner.repo}; {args.trials} trials per case, {args.images} images per import "
          f"({args.delete_images} in delete-reimport)", flush=True)
    results = []
    t0 = time.perf_counter()
    for case in args.cases or CASES:
        n = args.delete_images if case == "delete-reimport" else args.images
        results.append(run_case(runner, case, args.trials, n, args.seed))
    print()
    print(table(results))
    print(f"\n{time.perf_counter() - t0:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps({"repo": str(runner.repo), "trials": args.trials, "images": args.images,
                                         "delete_images": args.delete_images,
                                         "results": [asdict(r) for r in results]}, indent=2))


if __name__ == "__main__":
    main()
