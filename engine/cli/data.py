"""``import``, ``export``, ``batches``, ``batch show|delete`` and ``exclude``/``include``."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from engine.cli.base import State, main, pass_state, progress_bar
from engine.io.common import LABEL_SOURCES, SPLIT_CHOICES, SPLITS
from engine.media import DEFAULT_MAX_PIXELS


@main.command("import")
@click.option("--format", "fmt", required=True, metavar="FORMAT",
              help="coco: annotation JSON; yolo-pose: data.yaml or its folder; lsp: folder with "
                   "joints.mat; images: a folder of unlabelled images; or a plugin's import format.")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--split", type=click.Choice(SPLIT_CHOICES), default="source", show_default=True,
              help="train/val/test for all; auto = 80/10/10 by a seeded hash of the image "
                   "content (stable on re-import); source = the split the dataset declares "
                   "(YOLO data.yaml, realcal's COCO export), else auto.")
@click.option("--split-seed", default="0", show_default=True, help="Seed of the auto split.")
@click.option("--limit", type=click.IntRange(min=0), help="Import only the first N records.")
@click.option("--ids", "ids_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File with one id per line (image id, file name or stem) to import.")
@click.option("--strict", is_flag=True, help="Abort (importing nothing) if any record would be skipped.")
@click.option("--image-root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="COCO only: folder the JSON's file_name entries are relative to.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS,
              show_default=True, help="Refuse images larger than this (decompression-bomb guard).")
@click.option("--report", "report_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the full import report (every skipped record) as JSON here.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def import_(state: State, fmt, path, split, split_seed, limit, ids_file, strict, image_root,
            max_pixels, report_path, as_json) -> None:
    """Import real images and their annotations as one batch.

    A problem with the whole file (malformed JSON/YAML, wrong keypoint count for the declared
    schema, a path escaping the dataset folder, an unknown schema) aborts with one error and
    changes nothing. A problem with one record (missing or undecodable image, an image over
    --max-pixels, NaN coordinates, a duplicate) skips it and the report names it.
    """
    from engine import registry
    from engine.io import parse
    from engine.io.common import read_ids_file, run_import

    registry.get("import_format", fmt)   # a typo fails here, naming the valid formats
    ws = state.workspace()
    options = {"image_root": image_root} if image_root else {}
    parsed = parse(fmt, path, **options)
    ids = read_ids_file(ids_file) if ids_file else None
    report = run_import(ws, parsed, split=split, split_seed=split_seed, ids=ids, limit=limit,
                        strict=strict, max_pixels=max_pixels, progress=progress_bar("import"))
    full = report.to_dict()
    if report_path:
        report_path.write_text(json.dumps(full, indent=2))
    if as_json:
        click.echo(json.dumps(report.to_dict(max_names=50), indent=2))
        return
    splits = ", ".join(f"{s} {n}" for s, n in sorted(report.by_split.items()))
    if report.batch_id is None:
        click.echo(f"nothing imported from {parsed.format} ({parsed.dataset}): no record was usable")
    else:
        click.echo(f"batch {report.batch_id}: imported {report.images} images ({splits}) and "
                   f"{report.persons} persons from {parsed.format} ({parsed.dataset}, schema "
                   f"{report.schema}) in {report.seconds:.1f} s")
    if report.persons_without_keypoints:
        click.echo(f"  {report.persons_without_keypoints} persons have no labelled keypoints "
                   f"(kept as boxes; keypoint metrics ignore them)")
    for note in report.notes:
        click.echo(f"  note: {note}")
    if report.ids_not_found:
        click.echo(f"  {len(report.ids_not_found)} requested ids not in the dataset, e.g. "
                   f"{', '.join(report.ids_not_found[:5])}")
    if report.skipped:
        click.echo(f"  skipped {len(report.skipped)} records:")
        for reason, n in report.skipped_by_reason().items():
            examples = [name for name, r in report.skipped if r.split(":")[0] == reason][:3]
            click.echo(f"    {n:>6}  {reason} (e.g. {', '.join(examples)})")
        if not report_path:
            click.echo("  (use --report FILE for the full list)")


def _splits(values: tuple[str, ...]) -> list[str]:
    if not values or "all" in values:
        return list(SPLITS)
    return list(dict.fromkeys(values))


@main.command()
@click.option("--format", "fmt", required=True, metavar="FORMAT",
              help="coco (keypoints JSON), yolo-pose (an Ultralytics folder), or a plugin's export format.")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--split", "split_values", type=click.Choice(SPLITS + ("all",)), multiple=True,
              help="Split(s) to export (repeatable); default all.")
@click.option("--source", "sources", type=click.Choice(LABEL_SOURCES), multiple=True,
              help="Label sources to export (repeatable); default ground_truth, corrected, "
                   "conditioning. Machine labels (predicted) only when named.")
@click.option("--kind", type=click.Choice(["real", "synthetic", "all"]), default="all",
              show_default=True)
@click.option("--synthetic", "synthetic", type=click.Choice(["accepted", "curated", "all"]),
              default="accepted", show_default=True,
              help="Which synthetic images leave: accepted in review, the latest curation selection, "
                   "or all. Honeypots and rejected images never leave.")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def export(state: State, fmt, out, split_values, sources, kind, synthetic, as_json) -> None:
    """Export images and labels as COCO keypoints JSON or an Ultralytics YOLO-pose folder.

    Review state is respected: honeypots and rejected images are never exported, synthetic images
    only from the --synthetic pool, and a reviewer's correction replaces the label it corrects.
    The export records the pool (COCO: info.realcal; YOLO-pose: realcal_export.json).
    """
    import inspect

    from engine.errors import RealcalError
    from engine.io import exporter

    export_fn = exporter(fmt)   # a typo fails here, naming the valid formats
    if "synthetic" not in inspect.signature(export_fn).parameters:
        raise RealcalError(f"export format {fmt!r} does not take a synthetic pool (no 'synthetic' "
                           f"parameter), so it cannot promise to leave out rejected and unreviewed "
                           f"images; update the plugin")
    ws = state.workspace()
    summary = export_fn(
        ws, out, splits=_splits(split_values),
        sources=list(sources) or ["ground_truth", "corrected", "conditioning"],
        kinds=None if kind == "all" else [kind], progress=progress_bar("export"), synthetic=synthetic)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for split, s in summary["splits"].items():
        click.echo(f"{split}: {s['images']} images, {s['persons']} persons")
    if summary.get("crowd_regions_dropped"):
        click.echo(f"  {summary['crowd_regions_dropped']} crowd regions left out (YOLO has no ignore regions)")
    if summary.get("keypoints_outside_image"):
        click.echo(f"  {summary['keypoints_outside_image']} keypoints outside their image written as unlabelled")
    left = (summary.get("selection") or {}).get("left_out") or {}
    if any(left.values()):
        click.echo(f"  left out: {left.get('honeypot', 0)} honeypots, {left.get('rejected', 0)} rejected, "
                   f"{left.get('synthetic_not_in_pool', 0)} synthetic not in the {synthetic} pool")
    click.echo(f"written to {summary['out']}")


@main.command("batches")
@click.option("--json", "as_json", is_flag=True)
@pass_state
def batches_cmd(state: State, as_json: bool) -> None:
    """List import and generation batches."""
    from store import batches as store_batches

    with state.workspace().connect() as db:
        rows = store_batches.list_batches(db)
    if as_json:
        click.echo(json.dumps([{k: v for k, v in r.items() if k != "report"} |
                               {"skipped": r["report"].get("skipped_count", 0)} for r in rows],
                              indent=2))
        return
    if not rows:
        click.echo("no batches yet: `realcal import --help` to add data")
        return
    click.echo(f"{'id':>4}  {'kind':<10} {'format':<10} {'dataset':<24} {'images':>7} "
               f"{'persons':>8} {'skipped':>8}  created")
    for r in rows:
        click.echo(f"{r['id']:>4}  {r['kind']:<10} {r['format'] or '':<10} "
                   f"{(r['dataset'] or '')[:24]:<24} {r['images']:>7} {r['persons']:>8} "
                   f"{r['report'].get('skipped_count', 0):>8}  {r['created_at'][:19]}")


@main.group()
def batch() -> None:
    """Inspect or delete one batch."""


def _batch_or_fail(ws, batch_id: int) -> dict:
    from engine.errors import RealcalError
    from store import batches as store_batches

    with ws.connect() as db:
        row = store_batches.get(db, batch_id)
    if row is None:
        raise RealcalError(f"no batch {batch_id}; `realcal batches` lists them")
    return row


@batch.command("show")
@click.argument("batch_id", type=int)
@pass_state
def batch_show(state: State, batch_id: int) -> None:
    """Print a batch with its full import report as JSON."""
    click.echo(json.dumps(_batch_or_fail(state.workspace(), batch_id), indent=2))


@batch.command("delete")
@click.argument("batch_id", type=int)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def batch_delete(state: State, batch_id: int, yes: bool) -> None:
    """Delete a batch, its images (with every person on them) and the persons it added.

    Files no other image references are removed. The event log keeps a record.
    """
    from engine.batches import delete_batch

    ws = state.workspace()
    row = _batch_or_fail(ws, batch_id)
    if not yes:
        click.confirm(f"Delete batch {batch_id} ({row['kind']} {row['format']} {row['dataset']}: "
                      f"{row['images']} images, {row['persons']} persons)?", abort=True)
    result = delete_batch(ws, batch_id)
    click.echo(f"deleted batch {batch_id}: {result['images']} images, {result['persons']} persons, "
               f"{result['files_removed']} image files removed")


@main.command()
@click.argument("image_ids", nargs=-1, type=int, required=True)
@click.option("--reason", help="Why (kept with the exclusion and in the event log).")
@pass_state
def exclude(state: State, image_ids: tuple[int, ...], reason: str | None) -> None:
    """Keep train images (real or synthetic) out of every manifest built from now on; `include` undoes it.
    Val and test images cannot be excluded: every model is measured on them."""
    from engine.train.manifest import exclude as exclude_images

    r = exclude_images(state.workspace(), image_ids, reason=reason, user=os.environ.get("USER"))
    click.echo(f"excluded {r['excluded']} image(s)"
               + (f"; {r['already']} were already excluded" if r["already"] else ""))


@main.command()
@click.argument("image_ids", nargs=-1, type=int, required=True)
@pass_state
def include(state: State, image_ids: tuple[int, ...]) -> None:
    """Undo `exclude`: these images may enter manifests again."""
    from engine.train.manifest import include as include_images

    r = include_images(state.workspace(), image_ids, user=os.environ.get("USER"))
    click.echo(f"included {r['included']} image(s) again"
               + (f"; {r['not_excluded']} were not excluded" if r["not_excluded"] else ""))
