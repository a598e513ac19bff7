"""Server-side commands: ``serve``, ``migrate``, ``admin``."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated

import typer

# uvicorn's httptools protocol plus zero-copy file sends (api/zerocopy.py).
HTTP_PROTOCOL = "pooldrop.api.zerocopy:ZeroCopyHttpToolsProtocol"
# uvicorn's sans-I/O WebSocket protocol, holding less per idle socket (api/ws_protocol.py).
WS_PROTOCOL = "pooldrop.api.ws_protocol:LeanWebSocketProtocol"
# Open SSE streams and long-polls would otherwise hold a graceful shutdown forever.
GRACEFUL_SHUTDOWN_SECONDS = 10
# Client apps send in bursts with pauses; uvicorn's 5 s default makes them reconnect (and race
# the server's close) between calls of one job.
KEEP_ALIVE_SECONDS = 75
ADMIN_HELP = "Manage users directly in the database (for closed signup or a lost admin)."


def _settings(data_dir: Path | None = None, **overrides: object):  # type: ignore[no-untyped-def]
    from pooldrop.config import Settings

    values = {k: v for k, v in overrides.items() if v is not None}
    if data_dir is not None:
        values["data_dir"] = data_dir
    return Settings(**values).resolved()  # type: ignore[arg-type]


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (POOLDROP_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (POOLDROP_PORT).")] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="Data directory of the embedded default (POOLDROP_DATA_DIR)."),
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Processes to run; needs a shared bus (POOLDROP_WORKERS).")
    ] = None,
    no_scheduler: Annotated[
        bool, typer.Option("--no-scheduler", help="Do not run the background scheduler here.")
    ] = False,
) -> None:
    """Run the HTTP/WebSocket server."""
    import uvicorn

    from pooldrop.api.app import create_app

    settings = _settings(data_dir, host=host, port=port, workers=workers)
    if settings.workers > 1:
        if settings.bus_url.startswith("memory:"):
            typer.echo(
                "error: --workers > 1 needs a shared bus: set POOLDROP_BUS_URL to redis:// or "
                "amqp:// (memory:// only reaches one process)",
                err=True,
            )
            raise typer.Exit(2)
        if settings.is_sqlite:
            typer.echo("error: --workers > 1 needs PostgreSQL (POOLDROP_DATABASE_URL)", err=True)
            raise typer.Exit(2)
    _preflight(settings)
    if settings.workers > 1:
        # Children rebuild the same settings from the environment.
        os.environ.update(_settings_env(settings))
        uvicorn.run(
            "pooldrop.api.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            workers=settings.workers,
            log_level=settings.log_level,
            proxy_headers=True,
            http=HTTP_PROTOCOL,
            ws=WS_PROTOCOL,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
        )
        return
    # The preflight has migrated already; worker processes (above) still check, a no-op at head.
    app = create_app(settings, run_scheduler=not no_scheduler, migrate=False)
    typer.echo(
        f"pooldrop serving on http://{settings.host}:{settings.port} (data: {settings.data_dir})"
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        http=HTTP_PROTOCOL,
        ws=WS_PROTOCOL,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


def _preflight(settings: object) -> None:
    """Migrate and reach every backend once, so a bad URL fails fast with one clear line."""
    from pooldrop.config import Settings
    from pooldrop.services.runtime import StartupError, start_runtime, stop_runtime

    assert isinstance(settings, Settings)

    async def _check() -> None:
        rt = await start_runtime(settings)
        await stop_runtime(rt)

    try:
        asyncio.run(_check())
    except StartupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


def _settings_env(settings: object) -> dict[str, str]:
    from pooldrop.config import Settings

    assert isinstance(settings, Settings)
    return {
        f"POOLDROP_{name.upper()}": str(value)
        for name, value in settings.model_dump().items()
        if value is not None and value != ""
    }


def migrate(
    data_dir: Annotated[
        Path | None, typer.Option(help="Data directory (POOLDROP_DATA_DIR).")
    ] = None,
) -> None:
    """Apply database migrations and exit."""
    from pooldrop.store.migrate import upgrade

    settings = _settings(data_dir)
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.database_url)
    typer.echo("database is up to date")


admin_app = typer.Typer(help=ADMIN_HELP, no_args_is_help=True)


@admin_app.command("create-user")
def create_user(
    username: Annotated[str, typer.Argument()],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True)],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user a global admin.")] = False,
    data_dir: Annotated[Path | None, typer.Option()] = None,
) -> None:
    """Create a user (works with signup closed)."""
    from pooldrop.domain.roles import GlobalRole
    from pooldrop.domain.validation import validate_password, validate_username
    from pooldrop.services.runtime import start_runtime, stop_runtime
    from pooldrop.store.models import User

    async def _run() -> None:
        rt = await start_runtime(_settings(data_dir))
        try:
            async with rt.uow() as uow:
                uow.session.add(
                    User(
                        username=validate_username(username),
                        password_hash=await rt.passwords.hash(validate_password(password)),
                        role=GlobalRole.ADMIN if admin else GlobalRole.USER,
                        created_at=rt.clock.now(),
                    )
                )
        finally:
            await stop_runtime(rt)

    asyncio.run(_run())
    typer.echo(f"created {'admin' if admin else 'user'} {username}")


def register(app: typer.Typer) -> None:
    app.command()(serve)
    app.command()(migrate)
    app.add_typer(admin_app, name="admin")
