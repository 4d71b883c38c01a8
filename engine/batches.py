"""Deleting a batch: rows in one transaction, then the files nobody references any more."""
from __future__ import annotations

from typing import Any

from engine import integrity
from engine.errors import RealcalError
from engine.workspace import Workspace
from store import batches as store_batches
from store import events as store_events
from store.db import write_transaction


def delete_batch(ws: Workspace, batch_id: int) -> dict[str, Any]:
    """Delete a batch's rows (one transaction), then, in the next write transaction, the files that
    no row and no running import references (the file rule of ``engine.integrity``). If the process
    dies between the two, the files are strays for ``realcal gc``; never rows without files."""
    with ws.connect() as db:
        with write_transaction(db):
            batch = store_batches.get(db, batch_id)
            if batch is None:
                raise RealcalError(f"no batch {batch_id}; `realcal batches` lists them")
            result = store_batches.delete(db, batch_id)
            store_events.log(db, "batch.delete", {
                "kind": batch["kind"], "format": batch["format"], "dataset": batch["dataset"],
                "source": batch["source"], "images": result["images"],
                "persons": result["persons"]}, batch_id=batch_id)
        with write_transaction(db):
            removed = integrity.remove_unreferenced(ws, db, [(f["sha256"], f["ext"]) for f in result["files"]])
        return {"batch_id": batch_id, "images": result["images"], "persons": result["persons"],
                "files_removed": removed}
