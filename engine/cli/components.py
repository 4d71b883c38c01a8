"""``realcal components``: every registered name per kind, with its parameters and where it comes from."""
from __future__ import annotations

import json

import click

from engine.cli.base import main


@main.command("components")
@click.option("--kind", help="Only this kind (generator, stage, embedder, selector, job, import_format, "
                             "export_format, pipeline_step).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def components(kind: str | None, as_json: bool) -> None:
    """List the registered components (built-in and plugins) and their parameters with defaults."""
    from engine import registry

    described = registry.describe()
    if kind:
        registry.names(kind)          # an unknown kind fails with the valid kinds
        described = {kind: described[kind]}
    errors = registry.plugin_errors()
    if as_json:
        click.echo(json.dumps({"components": described, "plugin_errors": errors}, indent=2, default=str))
        return
    for k, rows in described.items():
        click.echo(f"{k}:")
        for row in rows:
            extra = "" if row["source"] == "built-in" else f"  [{row['source']}]"
            title = f" — {row['title']}" if row.get("title") else ""
            click.echo(f"  {row['name']}{title}{extra}")
            for p in row.get("params", []):
                click.echo(f"      {p['name']}: {p['type']} = {json.dumps(p['default'], default=str)}")
    for k, errs in errors.items():
        for name, why in errs.items():
            click.echo(f"plugin {k} {name!r} failed to load: {why}", err=True)
