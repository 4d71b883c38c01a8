"""Run a multi-statement DDL script inside the migration's transaction.

``sqlite3.Connection.executescript`` commits first, which would break the transaction that
``Migrations.apply`` wraps around each migration; this splits the script into complete
statements and executes them one by one instead.
"""
import sqlite3


def run_script(db, script: str) -> None:
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            if statement.strip():
                db.execute(statement)
            statement = ""
    if statement.strip():
        raise ValueError(f"incomplete SQL statement in migration: {statement.strip()[:80]}")
