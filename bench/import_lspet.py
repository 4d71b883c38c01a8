"""Import throughput on LSPET (../shared/data/lspet): images/s and peak RSS.

    .venv/bin/python bench/import_lspet.py [N]
"""
import resource
import sys
import tempfile
import time
from pathlib import Path

from engine.io import parse
from engine.io.common import run_import
from engine.workspace import Workspace

LSPET = Path(__file__).resolve().parents[2] / "shared" / "data" / "lspet"


def main() -> None:
    if not LSPET.exists():
        sys.exit(f"LSPET not found at {LSPET}")
    limit = int(sys.argv[1]) if len(sys.argv) > 1 else None
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        t0 = time.perf_counter()
        parsed = parse("lsp", LSPET)
        t1 = time.perf_counter()
        report = run_import(ws, parsed, limit=limit)
        t2 = time.perf_counter()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"parse joints.mat: {t1 - t0:.2f} s ({len(parsed.records)} annotations)")
    print(f"import: {report.images} images, {report.persons} persons, {len(report.skipped)} skipped "
          f"in {t2 - t1:.1f} s = {report.images / (t2 - t1):.0f} images/s (hash, decode, thumbnail, insert)")
    print(f"peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
