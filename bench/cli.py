"""``python -m bench``: start both servers, run the scenarios, print one table, record it."""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bench import postgres
from bench.api import BenchApi, EndpointMissing
from bench.core import Context, Mode
from bench.machine import describe
from bench.profiling import Profiler
from bench.report import (
    NOT_AVAILABLE,
    SKELETON,
    Row,
    generated_section,
    refresh_docs,
    results_document,
    table,
    write_results,
)
from bench.scenarios import SCENARIOS
from bench.servers import NGINX_INSTALL_HINT, NginxServer, PooldropServer, ServerError
from bench.wrk import LoadError, wrk_binary

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
DOCS_PATH = REPO / "docs" / "BENCHMARKS.md"
NOFILE_WANTED = 65536


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark pooldrop against a plain nginx on this machine, in the same run.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="smaller loads, one run each")
    size.add_argument(
        "--smoke", action="store_true", help="tiny loads, one run each (~10 s; checks it all works)"
    )
    p.add_argument(
        "--only",
        action="append",
        choices=sorted(SCENARIOS),
        metavar="NAME",
        help=f"run only this scenario (repeatable): {', '.join(SCENARIOS)}",
    )
    p.add_argument(
        "--pooldrop-only",
        action="store_true",
        help="do not start nginx; measure pooldrop alone (no nginx needed)",
    )
    p.add_argument("--runs", type=int, help="runs per scenario (default 3; 1 with --quick/--smoke)")
    p.add_argument(
        "--work-dir", type=Path, help="where servers keep their files (default: a temp dir)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir afterwards")
    p.add_argument(
        "--no-write", action="store_true", help="write neither bench/results nor docs/BENCHMARKS.md"
    )
    p.add_argument(
        "--docs",
        action="store_true",
        help="refresh docs/BENCHMARKS.md even for a partial or quick run",
    )
    p.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="also write the results document (JSON) to FILE, in any mode",
    )
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record the pooldrop server with py-spy during each scenario, into DIR",
    )
    p.add_argument(
        "--profile-native",
        action="store_true",
        help="with --profile: all threads with C frames and wait states (slows the server down)",
    )
    return p.parse_args(argv)


def _raise_open_files_limit() -> int:
    """fanout holds 10,000 sockets on each side; children (servers, wrk) inherit the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = NOFILE_WANTED if hard == resource.RLIM_INFINITY else min(hard, NOFILE_WANTED)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _missing_tools(need_nginx: bool) -> list[str]:
    problems = []
    try:
        wrk_binary()
    except LoadError as exc:
        problems.append(str(exc))
    if need_nginx and NginxServer.binary() is None:
        problems.append(f"nginx is not installed; install it with: {NGINX_INSTALL_HINT}")
    if shutil.which("tar") is None:
        problems.append("tar is not installed (apt-get install -y tar)")
    return problems


@contextlib.contextmanager
def _work_dir(chosen: Path | None, keep: bool) -> Iterator[Path]:
    if chosen is not None:
        chosen.mkdir(parents=True, exist_ok=True)
        yield chosen
        return
    path = Path(tempfile.mkdtemp(prefix="pooldrop-bench-"))
    try:
        yield path
    finally:
        if keep:
            print(f"work dir kept: {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ")
    return text if len(text) <= 200 else text[:197] + "..."


def run_suite(args: argparse.Namespace) -> int:
    mode = Mode.SMOKE if args.smoke else Mode.QUICK if args.quick else Mode.FULL
    runs = args.runs or (3 if mode is Mode.FULL else 1)
    names = args.only or list(SCENARIOS)
    problems = _missing_tools(need_nginx=not args.pooldrop_only)
    if problems:
        print("cannot run the benchmark:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    limit = _raise_open_files_limit()
    started = datetime.now(UTC)
    rows: list[Row] = []
    with _work_dir(args.work_dir, args.keep) as work, contextlib.ExitStack() as stack:
        print(f"pooldrop benchmark, mode {mode}, {runs} run(s) per scenario, open files {limit}")
        pooldrop = PooldropServer(work / "pooldrop")
        nginx = None if args.pooldrop_only else NginxServer(work / "nginx")
        pg_server = None
        try:
            if mode is Mode.SMOKE and "small-pg" in names:
                # Start-up (imports, migrations) is most of a smoke run: overlap the two.
                pg_url = stack.enter_context(postgres.fresh_database())
                pg_server = PooldropServer(work / "pooldrop-pg", pg_url)
            for server in (pooldrop, nginx, pg_server):
                if server is not None:
                    stack.callback(server.stop)
                    server.start()
            for server in (pooldrop, nginx):
                if server is not None:
                    server.wait_ready()
        except (ServerError, RuntimeError) as exc:
            print(f"cannot start the servers: {exc}", file=sys.stderr)
            return 2
        api = BenchApi(pooldrop.url)
        stack.callback(api.close)
        ctx = Context(
            mode=mode,
            work=work,
            pooldrop=pooldrop,
            api=api,
            routes=api.routes(),
            nginx=nginx,
            runs=runs,
            pg_server=pg_server,
        )
        machine = describe(work)
        for name in names:
            scenario = SCENARIOS[name]
            print(f"[{name}] {scenario.what} ...", flush=True)
            t0 = time.monotonic()
            try:
                with Profiler.maybe(args.profile, name, pooldrop.pid, args.profile_native):
                    outcome = scenario.run(ctx)
                row = Row.measured(name, scenario.what, scenario.target, outcome)
            except EndpointMissing as exc:
                row = Row(name, scenario.what, scenario.target, None, NOT_AVAILABLE)
                print(f"[{name}] missing: {exc}")
            except Exception as exc:  # one broken scenario must not hide the others
                traceback.print_exc(file=sys.stderr)
                row = Row(name, scenario.what, scenario.target, None, f"error: {_short(exc)}")
            if not pooldrop.alive():
                print(f"pooldrop died:\n{pooldrop.log_tail()}", file=sys.stderr)
                rows.append(Row(name, scenario.what, scenario.target, None, "error: server died"))
                break
            rows.append(row)
            print(f"[{name}] {row.status} in {time.monotonic() - t0:.1f} s", flush=True)

    print()
    print(table(rows))
    document = results_document(rows, machine, str(mode), started, runs)
    if args.summary is not None:
        args.summary.write_text(json.dumps(document, indent=2) + "\n")
    if mode is not Mode.SMOKE and not args.no_write:
        suffix = "" if mode is Mode.FULL and not args.only and nginx is not None else f"-{mode}"
        if args.only:
            suffix += "-" + "-".join(args.only)
        path = write_results(RESULTS_DIR, document, suffix)
        print(f"\nresults: {path.relative_to(REPO)}")
        full = mode is Mode.FULL and not args.only and nginx is not None
        if full or args.docs:
            refresh_docs(DOCS_PATH, generated_section(document, rows, path.name), SKELETON)
            print(f"refreshed: {DOCS_PATH.relative_to(REPO)}")
    return 1 if any(r.failed_to_run for r in rows) else 0


def main(argv: list[str] | None = None) -> None:
    sys.exit(run_suite(parse_args(argv)))
