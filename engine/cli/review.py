"""``user add|list|disable|enable|passwd|logout`` and ``review build|stats|conflicts|resolve``."""
from __future__ import annotations

import json
import sys

import click

from engine.cli.base import State, main, pass_state


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _ended(n: int) -> str:
    return f"; {n} session{'s' if n != 1 else ''} ended" if n else ""


@main.group()
def user() -> None:
    """Manage accounts (admins see everything; annotators only Review).

    Names are case-insensitive (Frank and frank are one account). Passwords are 8 characters to
    72 bytes (bcrypt's limit). Changing a password, disabling an account or `user logout` ends
    the account's sessions at once.
    """


@user.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "annotator"]), required=True)
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@pass_state
def user_add(state: State, name, role, password_stdin) -> None:
    from engine import review

    with state.workspace().connect() as db:
        review.add_user(db, name, role, _read_password(password_stdin))
    click.echo(f"user {name} added ({role})")


@user.command("list")
@pass_state
def user_list(state: State) -> None:
    from store import review as store_review

    with state.workspace().connect() as db:
        rows = store_review.users(db)
    if not rows:
        click.echo("no users: the app runs in single-user mode on loopback")
    elif not any(not u["disabled"] for u in rows):
        click.echo("no active user: nobody can log in to the app (`realcal user enable NAME`)")
    for u in rows:
        click.echo(f"{u['name']:<24} {u['role']:<10} {'disabled' if u['disabled'] else 'active'}")


@user.command("disable")
@click.argument("name")
@pass_state
def user_disable(state: State, name) -> None:
    """Disable an account and end its sessions."""
    from engine import review

    with state.workspace().connect() as db:
        ended = review.set_disabled(db, name, True)
    click.echo(f"user {name} disabled{_ended(ended)}")


@user.command("enable")
@click.argument("name")
@pass_state
def user_enable(state: State, name) -> None:
    from engine import review

    with state.workspace().connect() as db:
        review.set_disabled(db, name, False)
    click.echo(f"user {name} enabled")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True)
@pass_state
def user_passwd(state: State, name, password_stdin) -> None:
    """Set a new password and end the account's sessions."""
    from engine import review

    with state.workspace().connect() as db:
        ended = review.change_password(db, name, _read_password(password_stdin))
    click.echo(f"password of {name} changed{_ended(ended)}")


@user.command("logout")
@click.argument("name")
@pass_state
def user_logout(state: State, name) -> None:
    """End every session of an account (a copied cookie stops working)."""
    from engine import review

    with state.workspace().connect() as db:
        ended = review.end_sessions(db, name)
    click.echo(f"user {name}: {ended} session{'s' if ended != 1 else ''} ended")


@main.group("review")
def review_group() -> None:
    """Build the review queue, see review statistics, settle conflicts."""


@review_group.command("build")
@click.option("--overlap", type=float, default=0.05, show_default=True,
              help="Fraction of items reviewed by two people (agreement).")
@click.option("--honeypots", type=int, default=0, show_default=True,
              help="Known-bad items (mirrored images with unmirrored labels) to measure accuracy.")
@pass_state
def review_build(state: State, overlap, honeypots) -> None:
    """Queue the latest curation run's order for review."""
    from engine import review

    ws = state.workspace()
    with ws.connect() as db:
        r = review.build_queue(ws, db, overlap=overlap, honeypots=honeypots)
    click.echo(f"queued {r['added']} items ({r['overlap_items']} with two slots, {r['honeypots']} honeypots)")


@review_group.command("stats")
@pass_state
def review_stats(state: State) -> None:
    """Review statistics as JSON (no review data yet: says so)."""
    from engine import review

    with state.workspace().connect() as db:
        s = review.stats(db)
    click.echo(json.dumps(s, indent=2) if s["decisions"] else "no review data yet")


@review_group.command("resolve")
@click.argument("item_id", type=int)
@click.argument("decision", type=click.Choice(["accept", "reject"]))
@click.option("--admin", "admin_name", default="cli", show_default=True)
@pass_state
def review_resolve(state: State, item_id, decision, admin_name) -> None:
    """Settle a conflict item."""
    from engine import review

    with state.workspace().connect() as db:
        review.resolve_conflict(db, admin_name, item_id, decision)
    click.echo(f"item {item_id}: {decision}ed")
