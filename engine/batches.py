"""Deleting a batch: rows in one transaction, then the files nobody references any more."""
from __future__ import annotations

from typing import Any

from engine import media
from engine.errors import RealcalError
from engine.workspace import Workspace
from store import batches as store_batches
from store import events as store_events
from store import images as store_images
from store.db import write_transaction


def delete_batch(ws: Workspace, batch_id: int) -> dict[str, Any]:
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
        removed = 0
        for f in result["files"]:
            if not store_images.referenced(db, f["sha256"]):
                media.remove_files(ws.root, f["sha256"], f["ext"])
                removed += 1
        return {"batch_id": batch_id, "images": result["images"], "persons": result["persons"],
                "files_removed": removed}
