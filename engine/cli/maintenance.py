"""``fsck`` and ``gc``: check the workspace's files and database; remove what nothing references."""
from __future__ import annotations

import json
import sys

import click

from engine.cli.base import State, main, pass_state

EXAMPLES = 5


def _examples(items: list, key: str | None = None) -> str:
    shown = [str(i[key] if key else i) for i in items[:EXAMPLES]]
    more = f", ... ({len(items) - EXAMPLES} more)" if len(items) > EXAMPLES else ""
    return f" (e.g. {', '.join(shown)}{more})" if shown else ""


def _echo_findings(report) -> None:
    click.echo(f"workspace {report.workspace}: {report.images} image rows, {report.files} files in images/ and thumbs/")
    if report.database_error:
        click.echo(f"  database: {report.database_error}")
        return
    if not report.locked:
        click.echo("  note: the database is read-only, so this was checked without the write lock")
    lines = [
        ("rows whose image file is missing", report.missing_images, "path"),
        ("rows whose thumbnail is missing", report.missing_thumbnails, "path"),
        ("stray image files (no row)", report.stray_images, None),
        ("stray thumbnails (no row)", report.stray_thumbnails, None),
        ("temporary files left by interrupted writes", report.temp_files, None),
        ("files that are not content-addressed (gc leaves them)", report.foreign_files, None),
    ]
    for label, items, key in lines:
        click.echo(f"  {label}: {len(items)}{_examples(items, key)}")
    click.echo(f"  stale claims (from writers that died): {report.stale_claims}")
    orphans = sum(o["rows"] for o in report.orphaned_rows)
    click.echo(f"  orphaned rows: {orphans}"
               + (" (" + ", ".join(f"{o['table']} -> {o['missing_parent']}: {o['rows']}"
                                   for o in report.orphaned_rows) + ")" if orphans else ""))
    check = report.integrity_check
    click.echo(f"  SQLite integrity check: {'ok' if check == ['ok'] else '; '.join(check[:EXAMPLES])}")
    if report.in_flight:
        click.echo(f"  in flight (claimed by {report.live_writers} running writers, left alone): {report.in_flight}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the full report as one JSON object.")
@pass_state
def fsck(state: State, as_json: bool) -> None:
    """Check the workspace: rows whose image or thumbnail is missing, stray files, stale claims,
    orphaned rows and SQLite's integrity check. Changes nothing; exits 1 when it finds a problem.

    It runs under the workspace's write lock (writers wait a moment), so what it reports is one
    consistent state; files claimed by a running import are in flight, not strays.
    """
    from engine import integrity

    report = integrity.fsck(state.workspace())
    problems = report.problems()
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        _echo_findings(report)
        if problems:
            hints = []
            if report.strays or report.stale_claims or report.missing_thumbnails:
                hints.append("`realcal gc` removes strays and stale claims and rebuilds thumbnails")
            if report.missing_images:
                hints.append("rows without their image need the source imported again (or `realcal batch delete`)")
            click.echo(f"{problems} problem{'s' if problems != 1 else ''}" + (": " + "; ".join(hints) if hints else ""))
        else:
            click.echo("no problems")
    if problems:
        sys.exit(1)


@main.command()
@click.option("--dry-run", is_flag=True, help="Say what would be removed; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@pass_state
def gc(state: State, dry_run: bool, as_json: bool) -> None:
    """Remove what no row and no running import references: stray images, thumbnails and temporary
    files, and the claims and lock files of writers that died (a killed import leaves them); rebuild
    missing thumbnails. Runs under the workspace's write lock. Rows are never deleted: rows whose
    image is missing and orphaned rows are only reported (see `realcal fsck`).
    """
    from engine import integrity
    from engine.errors import WorkspaceError

    ws = state.workspace()
    report = integrity.gc(ws, dry_run=dry_run)
    if report.database_error:
        raise WorkspaceError(report.database_error)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "dry_run": dry_run}, indent=2))
        return
    r = report.removed
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {r['stray_images']} stray image files, {r['stray_thumbnails']} stray thumbnails, "
               f"{r['temp_files']} temporary files, {r['stale_claims']} stale claims "
               f"({r['stale_locks']} lock files)")
    if report.strays:
        click.echo(f"  {_examples(report.strays).strip()}")
    if report.missing_thumbnails:
        n = len(report.missing_thumbnails) if dry_run else report.thumbnails_rebuilt
        click.echo(f"{'would rebuild' if dry_run else 'rebuilt'} {n} missing thumbnails")
    if report.in_flight:
        click.echo(f"left {report.in_flight} files claimed by {report.live_writers} running writers alone")
    left = []
    if report.missing_images:
        left.append(f"{len(report.missing_images)} rows whose image file is missing")
    if report.foreign_files:
        left.append(f"{len(report.foreign_files)} files that are not content-addressed")
    orphans = sum(o["rows"] for o in report.orphaned_rows)
    if orphans:
        left.append(f"{orphans} orphaned rows")
    if report.integrity_check != ["ok"]:
        left.append("an integrity_check failure")
    if left:
        click.echo("not touched (see `realcal fsck`): " + ", ".join(left))
