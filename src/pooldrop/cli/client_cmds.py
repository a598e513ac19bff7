"""Client-side commands: log in, manage pools and keys, enrol, push, flush, watch, aggregate.

The work is done by :mod:`pooldrop.client`; these commands parse options, read and write the
credentials file (see :mod:`pooldrop.client._config`), draw progress bars and turn expected
failures into one-line errors (exit status 1) instead of tracebacks.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

P = ParamSpec("P")
R = TypeVar("R")

# soft_wrap: long ids and paths stay on one line, so output can be piped and parsed.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

ServerOpt = Annotated[
    str | None,
    typer.Option("--server", envvar="POOLDROP_SERVER", help="Server URL (default: the profile's)."),
]
ProfileOpt = Annotated[
    str,
    typer.Option("--profile", envvar="POOLDROP_PROFILE", help="Credentials profile to use."),
]
PoolOpt = Annotated[
    str | None,
    typer.Option(
        "--pool", envvar="POOLDROP_POOL", help="Pool id (default: the enrolled key's pool)."
    ),
]
OutboxOpt = Annotated[
    Path | None,
    typer.Option(
        "--outbox", envvar="POOLDROP_OUTBOX", help="Offline outbox directory (queue, then send)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


class CliError(Exception):
    """An expected failure, shown as one line."""


def friendly(fn: Callable[P, R]) -> Callable[P, R]:
    """Expected failures become ``error: ...`` on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from pooldrop.client import ApiError, PooldropError, Unauthenticated

        try:
            return fn(*args, **kwargs)
        except Unauthenticated as e:
            hint = "; run pooldrop login (or enroll)" if e.code == "unauthenticated" else ""
            err.print(f"[red]error:[/red] {e.detail}{hint}", highlight=False)
        except ApiError as e:
            err.print(f"[red]error:[/red] {e.detail} ({e.code})", highlight=False)
        except (PooldropError, CliError, OSError, ValueError) as e:
            err.print(f"[red]error:[/red] {e}", highlight=False)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        raise typer.Exit(1)

    return wrapper


@contextlib.contextmanager
def _no_hint() -> Iterator[None]:
    """Credentials refused while logging in or enrolling: say so, without "run login"."""
    from pooldrop.client import Unauthenticated

    try:
        yield
    except Unauthenticated as e:
        raise CliError(e.detail) from None


# --- credentials --------------------------------------------------------------------------


def _config() -> Any:
    from pooldrop.client import Config

    return Config.load()


def _client(server: str | None, profile: str) -> Any:
    """A client for the profile's server and credential (``--server`` wins)."""
    from pooldrop.client import Client

    p = _config().profile(profile)
    url = server or p.server
    if not url:
        raise CliError("no server: pass --server URL, set POOLDROP_SERVER, or run pooldrop login")
    key = os.environ.get("POOLDROP_API_KEY")
    return Client(url, api_key=key or p.credential)


def _pool(pool: str | None, profile: str) -> str:
    chosen = pool or _config().profile(profile).pool_id
    if not chosen:
        raise CliError("no pool: pass --pool ID (or enrol, which remembers the key's pool)")
    return str(chosen)


# --- progress -----------------------------------------------------------------------------


@contextlib.contextmanager
def transfer_bars() -> Iterator[Progress]:
    """Byte progress bars (drawn only on a terminal)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not err.is_terminal,
    ) as bars:
        yield bars


def _bar(bars: Progress, label: str, total: int | None) -> Callable[[int], None]:
    task = bars.add_task(label, total=total)
    return lambda n: bars.advance(task, n)


# --- session commands ---------------------------------------------------------------------


@friendly
def login(
    server: ServerOpt = None,
    username: Annotated[str, typer.Option(prompt=True, help="Your user name.")] = "",
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, envvar="POOLDROP_PASSWORD", help="Asked if not given."
        ),
    ] = "",
    profile: ProfileOpt = "default",
) -> None:
    """Log in and store the access token in the credentials file."""
    from pooldrop.client import Client

    cfg = _config()
    p = cfg.profile(profile)
    url = server or p.server
    if not url:
        url = typer.prompt("Server URL")
    with Client(url) as c, _no_hint():
        session = c.login(username, password)
    p.server, p.token, p.username = url, session.access_token, session.username
    p.api_key = p.key_id = p.pool_id = p.role = None
    path = cfg.save()
    out.print(f"logged in to {url} as {session.username} (credentials in {path})")


@friendly
def signup(
    server: ServerOpt = None,
    username: Annotated[str, typer.Option(prompt=True, help="The user name to create.")] = "",
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="POOLDROP_PASSWORD",
            help="Asked if not given.",
        ),
    ] = "",
    profile: ProfileOpt = "default",
) -> None:
    """Create a user (the first one of a server is its admin) and log in as it."""
    from pooldrop.client import Client

    cfg = _config()
    p = cfg.profile(profile)
    url = server or p.server or typer.prompt("Server URL")
    with Client(url) as c:
        session = c.signup(username, password)
    p.server, p.token, p.username = url, session.access_token, session.username
    p.api_key = p.key_id = p.pool_id = p.role = None
    cfg.save()
    out.print(f"created {session.role} {session.username} on {url}; logged in")


@friendly
def logout(server: ServerOpt = None, profile: ProfileOpt = "default") -> None:
    """End the session on the server and forget the token."""
    from pooldrop.client import Unauthenticated

    cfg = _config()
    p = cfg.profile(profile)
    if p.token:
        with _client(server, profile) as c, contextlib.suppress(Unauthenticated):
            c.logout()
    p.token = None
    cfg.save()
    out.print("logged out")


@friendly
def enroll(
    token: Annotated[str, typer.Option("--token", help="The pool's enrolment token.")],
    name: Annotated[str, typer.Option("--name", help="A name for this app.")],
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
) -> None:
    """Enrol this app in a pool; its new key is stored in the credentials file."""
    from pooldrop.client import enroll as sdk_enroll

    cfg = _config()
    p = cfg.profile(profile)
    url = server or p.server
    if not url:
        raise CliError("no server: pass --server URL")
    with _no_hint():
        key = sdk_enroll(url, token, name)
    p.server, p.api_key, p.key_id, p.pool_id, p.role = (
        url,
        key.secret,
        key.key_id,
        key.pool_id,
        key.role,
    )
    p.token = p.username = None
    cfg.save()
    out.print(f"enrolled as {name} ({key.role}) in pool {key.pool_id}")


# --- pools, keys, enrolment tokens --------------------------------------------------------

pool_app = typer.Typer(help="Create and inspect pools.", no_args_is_help=True)
key_app = typer.Typer(help="Pool keys for apps and external servers.", no_args_is_help=True)
enrollment_app = typer.Typer(help="Enrolment tokens that let apps enrol.", no_args_is_help=True)

POOL_COLUMNS = ("pool_id", "name", "window", "allowed_lateness", "lease", "role")


def _print_models(items: list[Any], columns: tuple[str, ...], as_json: bool) -> None:
    rows = [i.model_dump(mode="json") for i in items]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table()
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(str(r.get(c, "")) for c in columns))
    out.print(table)


@pool_app.command("create")
@friendly
def pool_create(
    name: Annotated[str, typer.Argument(help="The pool's name.")],
    window: Annotated[str, typer.Option(help="Window length: 1m to 30d (e.g. 15m, 1h).")],
    lateness: Annotated[str | None, typer.Option(help="Allowed lateness (e.g. 5m).")] = None,
    late_policy: Annotated[str | None, typer.Option(help="reject or next_open.")] = None,
    min_contributors: Annotated[int | None, typer.Option(help="Quorum trigger.")] = None,
    max_file_size: Annotated[int | None, typer.Option(help="Bytes.")] = None,
    lease: Annotated[str | None, typer.Option(help="Aggregator lease (e.g. 5m).")] = None,
    max_attempts: Annotated[int | None, typer.Option(help="Claims before a group fails.")] = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """Create a pool; you become its admin."""
    with _client(server, profile) as c:
        pool = c.create_pool(
            name,
            window,
            allowed_lateness=lateness,
            late_policy=late_policy,
            min_contributors=min_contributors,
            max_file_size=max_file_size,
            lease=lease,
            max_attempts=max_attempts,
        )
    if as_json:
        out.print_json(pool.model_dump_json())
    else:
        out.print(pool.pool_id, highlight=False)


@pool_app.command("list")
@friendly
def pool_list(
    server: ServerOpt = None, profile: ProfileOpt = "default", as_json: JsonOpt = False
) -> None:
    """The pools you belong to."""
    with _client(server, profile) as c:
        _print_models(c.list_pools(), POOL_COLUMNS, as_json)


@pool_app.command("show")
@friendly
def pool_show(
    pool_id: Annotated[str, typer.Argument()],
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """A pool's settings and its groups."""
    with _client(server, profile) as c:
        pool = c.get_pool(pool_id)
        groups = c.list_groups(pool_id, limit=20).items
    if as_json:
        out.print_json(pool.model_dump_json())
        return
    for k, v in pool.model_dump(mode="json").items():
        out.print(f"{k:18} {v}", highlight=False)
    if groups:
        cols = ("group_id", "window_start", "state", "file_count", "contributors", "result_id")
        _print_models(groups, cols, False)


@key_app.command("create")
@friendly
def key_create(
    name: Annotated[str, typer.Option(help="What the key is for.")],
    role: Annotated[str, typer.Option(help="contributor, listener, aggregator or admin.")],
    pool: PoolOpt = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
) -> None:
    """Create a pool key; its secret is printed once."""
    with _client(server, profile) as c:
        key = c.create_key(_pool(pool, profile), name, role)
    out.print(key.secret, highlight=False)
    err.print(f"key {key.key_id} ({key.role}); the secret is shown only now")


@key_app.command("list")
@friendly
def key_list(
    pool: PoolOpt = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
    as_json: JsonOpt = False,
) -> None:
    """The pool's keys."""
    with _client(server, profile) as c:
        keys = c.list_keys(_pool(pool, profile))
    _print_models(keys, ("key_id", "name", "role", "created_at", "revoked_at"), as_json)


@key_app.command("revoke")
@friendly
def key_revoke(
    key_id: Annotated[str, typer.Argument()],
    pool: PoolOpt = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
) -> None:
    """Revoke a key; it stops working at once."""
    with _client(server, profile) as c:
        c.revoke_key(_pool(pool, profile), key_id)
    out.print(f"revoked {key_id}")


@enrollment_app.command("create")
@friendly
def enrollment_create(
    role: Annotated[str, typer.Option(help="The role enrolled apps get.")] = "contributor",
    max_uses: Annotated[int, typer.Option(help="How many apps may enrol with it.")] = 1,
    expires_in: Annotated[str, typer.Option(help="Validity (e.g. 7d).")] = "7d",
    pool: PoolOpt = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
) -> None:
    """Create an enrolment token for apps to run ``pooldrop enroll`` with."""
    with _client(server, profile) as c:
        token = c.create_enrollment(_pool(pool, profile), role, max_uses, expires_in)
    out.print(token.token, highlight=False)


# --- moving files -------------------------------------------------------------------------


def _outbox_uploader(client: Any, pool_id: str, outbox: Path, batch_files: int = 100) -> Any:
    from pooldrop.client import Uploader

    def outcome(entry: Any) -> None:
        if entry.state == "delivered":
            out.print(f"sent {entry.name} ({entry.size} bytes)", highlight=False)
        else:
            err.print(
                f"[yellow]rejected[/yellow] {entry.name}: {entry.error} ({entry.error_code})",
                highlight=False,
            )

    return Uploader(client, pool_id, outbox=outbox, on_outcome=outcome, batch_files=batch_files)


def _report_flush(report: Any) -> None:
    if report.pending:
        reason = f": {report.error}" if report.error else ""
        err.print(f"{report.pending} file(s) still queued{reason}", highlight=False)


@friendly
def push(
    files: Annotated[
        list[Path], typer.Argument(help="Files to upload.", exists=True, dir_okay=False)
    ],
    pool: PoolOpt = None,
    ts: Annotated[
        str | None,
        typer.Option(help="Event time, RFC 3339 or Unix seconds (default: each file's mtime)."),
    ] = None,
    outbox: OutboxOpt = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
) -> None:
    """Upload files now, or queue them in an outbox first (--outbox) and send what can be sent."""
    pool_id = _pool(pool, profile)
    with _client(server, profile) as c:
        if outbox is not None:
            with _outbox_uploader(c, pool_id, outbox) as up:
                for f in files:
                    up.add(f, ts=ts or f.stat().st_mtime)
                err.print(f"queued {len(files)} file(s) in {outbox}", highlight=False)
                _report_flush(up.flush(force=True))
            return
        with transfer_bars() as bars:
            for f in files:
                progress = _bar(bars, f.name, f.stat().st_size)
                upload = _upload_one(c, pool_id, f, ts or f.stat().st_mtime, progress)
                window = upload.window_start.isoformat() if upload.window_start else "?"
                out.print(f"{f.name} -> {upload.upload_id} (window {window})", highlight=False)


RESUMABLE_OVER = 64 * 1024 * 1024
"""Files above this size go through tus, so a broken connection does not restart them."""


def _upload_one(c: Any, pool_id: str, path: Path, ts: Any, progress: Callable[[int], None]) -> Any:
    if path.stat().st_size > RESUMABLE_OVER:
        return c.upload_resumable(pool_id, path, ts=ts, progress=progress)
    return c.upload(pool_id, path, ts=ts, progress=progress)


@friendly
def flush(
    outbox: OutboxOpt = None,
    pool: PoolOpt = None,
    loop: Annotated[
        bool, typer.Option("--loop", help="Keep running, sending as files arrive.")
    ] = False,
    batch_files: Annotated[int, typer.Option(help="Most files per batch request.", min=1)] = 100,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
) -> None:
    """Send what the outbox holds; exit status 1 if files are still waiting."""
    if outbox is None:
        raise CliError("no outbox: pass --outbox DIR or set POOLDROP_OUTBOX")
    with _client(server, profile) as c, _outbox_uploader(c, pool or "", outbox, batch_files) as up:
        if loop:
            up.run()
            return
        report = up.flush(force=True)
        _report_flush(report)
        counts = up.outbox.counts()
        out.print(
            f"outbox: {counts['pending']} pending, {counts['delivered']} delivered, "
            f"{counts['rejected']} rejected",
            highlight=False,
        )
        if report.pending:
            raise typer.Exit(1)


@friendly
def watch(
    download_to: Annotated[Path, typer.Option(help="Directory that receives the results.")],
    pool: PoolOpt = None,
    state: Annotated[
        Path | None, typer.Option(help="Cursor file (default: inside --download-to).")
    ] = None,
    transport: Annotated[str, typer.Option(help="auto, websocket, sse or longpoll.")] = "auto",
    count: Annotated[int | None, typer.Option(help="Exit after this many new results.")] = None,
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
) -> None:
    """Download every result the pool publishes (verified), now and as they come."""
    from pooldrop.client import ResultWatcher

    pool_id = _pool(pool, profile)
    with _client(server, profile) as c, transfer_bars() as bars:

        def announce(result: Any, path: Path) -> None:
            out.print(f"result {result.result_id} -> {path} (sha256 ok)", highlight=False)

        watcher = ResultWatcher(
            c,
            pool_id,
            download_to,
            state_file=state,
            transport=transport,
            on_result=announce,
            progress=lambda r: _bar(bars, r.name, r.size),
        )
        watcher.run(count=count)


@friendly
def aggregate(
    exec_: Annotated[
        str,
        typer.Option(
            "--exec",
            help="Shell command; {inputs} {input_dir} {manifest} {output} {group_id} filled in.",
        ),
    ],
    pool: PoolOpt = None,
    once: Annotated[bool, typer.Option("--once", help="Process one group, then exit.")] = False,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for a ready group per claim.")
    ] = 30.0,
    result_name: Annotated[str, typer.Option(help="The result's file name.")] = "result.bin",
    server: ServerOpt = None,
    profile: ProfileOpt = "default",
) -> None:
    """Claim groups, run the command on their files, publish its output as the result."""
    from pooldrop.client import Aggregator, CommandHandler

    pool_id = _pool(pool, profile)
    with _client(server, profile) as c:
        agg = Aggregator(c, pool_id, CommandHandler(exec_), wait=wait, result_name=result_name)
        if once:
            result = None
            while result is None:
                result = agg.run_once()
            out.print(f"published {result.result_id} for group {result.group_id}")
            return
        agg.run()


def register(app: typer.Typer) -> None:
    """Add the client commands to the ``pooldrop`` command."""
    app.command()(signup)
    app.command()(login)
    app.command()(logout)
    app.command()(enroll)
    app.command()(push)
    app.command()(flush)
    app.command()(watch)
    app.command()(aggregate)
    app.add_typer(pool_app, name="pool")
    app.add_typer(key_app, name="key")
    app.add_typer(enrollment_app, name="enrollment")
