"""``init`` and ``status``."""
from __future__ import annotations

import json

import click

from engine.cli.base import State, main, pass_state
from engine.errors import WorkspaceError
from engine.workspace import Workspace


@main.command()
@pass_state
def init(state: State) -> None:
    """Create a workspace (a folder with one database and the image store); safe to re-run."""
    if not state.workspace_arg:
        raise WorkspaceError("no workspace given: pass -w/--workspace DIR or set REALCAL_WORKSPACE")
    ws = Workspace.init(state.workspace_arg)
    click.echo(f"workspace ready: {ws.root}")


def status_dict(ws: Workspace) -> dict:
    from store import batches as store_batches
    from store import images as store_images
    from store import jobs as store_jobs

    with ws.connect() as db:
        out = {"workspace": str(ws.root), **store_images.counts(db)}
        out["batches"] = len(store_batches.list_batches(db))
        out["jobs"] = {"by_status": store_jobs.counts(db)}
        from store import curation as store_curation

        run = store_curation.latest_run(db)
        out["funnel"] = ({"run_id": run["id"], "stages": run["funnel"],
                          "selected": len(store_curation.selection(db, run["id"]))} if run else None)
        return out


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@pass_state
def status(state: State, as_json: bool) -> None:
    """Image counts by kind, split and dataset; person counts by annotation source."""
    data = status_dict(state.workspace())
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    im, pe = data["images"], data["persons"]
    click.echo(f"workspace {data['workspace']}")
    click.echo(f"images: {im['total']}  " + "  ".join(f"{k}={v}" for k, v in im["by_kind"].items()))
    for kind, splits in im["by_kind_and_split"].items():
        click.echo(f"  {kind:<10} " + "  ".join(f"{s}={splits.get(s, 0)}" for s in ("train", "val", "test")))
    click.echo(f"persons: {pe['total']}  " + "  ".join(f"{k}={v}" for k, v in pe["by_source"].items()))
    click.echo(f"batches: {data['batches']}")
    click.echo("jobs: " + "  ".join(f"{k}={v}" for k, v in data["jobs"]["by_status"].items()))
