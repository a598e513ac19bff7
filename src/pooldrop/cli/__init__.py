"""The ``pooldrop`` command. Settings are read when a command runs, never at import."""

from __future__ import annotations

import typer

from pooldrop.cli import client_cmds, server

app = typer.Typer(
    name="pooldrop",
    help="pooldrop: a file drop box for pools of client applications.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
server.register(app)
client_cmds.register(app)


def main() -> None:
    app()
