"""Executors: the Ray Data one gives the local one's results and survives a killed actor.

Ray runs locally, started by the test (CPU only, fractional CPUs per actor), bounded by timeouts."""
import os
import signal
import threading
import time

import numpy as np
import pytest

from engine import executors, jobs
from engine.errors import RealcalError

pytest.importorskip("ray", reason="the ray executor needs ray[data] (installed with the dev extra)")
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def ray_exe():
    import ray

    exe = executors.build({"name": "ray", "actors": 2, "cpus_per_actor": 0.5, "batch_size": 2})
    executors.ray_init(None, num_cpus=2)
    yield exe
    ray.shutdown()


def test_executor_config_is_checked():
    with pytest.raises(RealcalError, match="unknown executor 'spark'; valid: local, ray"):
        executors.build({"name": "spark"})
    with pytest.raises(RealcalError, match="unknown executor option"):
        executors.build({"name": "ray", "gpus": 1})
    with pytest.raises(RealcalError, match="cannot load batch function factory"):
        list(executors.build("local").map("engine.selftest:nope", {}, [1]))


def test_ray_gives_the_local_results_and_recovers_from_a_killed_actor(ray_exe, tmp_path):
    local = [r for _, res in executors.build("local").map("engine.selftest:square_fn", {}, list(range(40)))
             for r in res]
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    killed = []

    def killer():
        for _ in range(300):
            pids = [int(p.name) for p in pid_dir.iterdir()]
            if pids:
                break
            time.sleep(0.1)
        time.sleep(1.0)
        os.kill(pids[0], signal.SIGKILL)
        killed.append(pids[0])

    th = threading.Thread(target=killer)
    th.start()
    got = [r for _, res in ray_exe.map("engine.selftest:square_fn", {"delay_s": 0.2, "pid_dir": str(pid_dir)},
                                       list(range(40))) for r in res]
    th.join()
    assert killed, "no actor was killed"
    assert sorted((x, y) for x, y, _ in got) == sorted((x, y) for x, y, _ in local)  # each item exactly once
    assert len({p.name for p in pid_dir.iterdir()}) >= 3  # the killed actor was replaced


def test_ray_embeddings_equal_local_ones(ray_exe, ws, tmp_path):
    from engine import registry
    from engine.curate.embedders import cached_embeddings
    from engine.io import parse
    from engine.io.common import run_import
    from tests.helpers import make_coco

    run_import(ws, parse("coco", make_coco(tmp_path / "d", n=6)), split="train")
    with ws.connect() as db:
        images = [dict(r) for r in db.query("SELECT * FROM images ORDER BY id")]
        local = cached_embeddings(ws, db, registry.build("embedder", "effnet-lite0", {}), images)
        db.execute("DELETE FROM embeddings")
        db.conn.commit()
        emb = registry.build("embedder", "effnet-lite0", {})
        emb.executor, emb.spec = ray_exe, {"name": "effnet-lite0", "params": {}}
        remote = cached_embeddings(ws, db, emb, images)
        assert db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0] == 6  # written once each
    for i in local:
        assert np.allclose(local[i], remote[i], atol=1e-5)


def test_ray_generation_stores_the_local_images(ray_exe, tmp_path, lspet):
    from engine.generate.job import resolve_params
    from engine.io import parse
    from engine.io.common import run_import
    from engine.workspace import Workspace

    shas = []
    for name, exe in (("local", None), ("ray", {"name": "ray", "actors": 2, "cpus_per_actor": 0.5, "batch_size": 2})):
        ws = Workspace.init(tmp_path / name)
        run_import(ws, parse("lsp", lspet), limit=10, split="train")
        params = resolve_params(ws, {"count": 6, "seed": 3, "executor": exe, "chunk": 2,
                                     "generator_params": {"width": 96, "height": 96, "background": "procedural"}})
        final = jobs.run_foreground(ws, "generate", params)
        assert final["status"] == "done", final["error"]
        with ws.connect() as db:
            shas.append(sorted(r[0] for r in db.execute("SELECT sha256 FROM images WHERE kind = 'synthetic'")))
    assert len(shas[0]) == 6 and shas[0] == shas[1]
