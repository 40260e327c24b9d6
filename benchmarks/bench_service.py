"""Recipe-query latency of the service under a fixed request rate, on SQLite and PostgreSQL; writes docs/benchmarks.md.

For each backend: seed a database with recipes, start ``uvicorn autoaccel.service:create_app --factory`` in a
subprocess on 127.0.0.1, and drive ``GET /v1/recipes/best`` from a second process at a fixed rate (open loop: request
``i`` is due at ``t0 + i / rate`` whether or not earlier ones have answered, and its latency counts from that due
time, so a stalled server shows up as latency instead of a lower rate). The load generator keeps a pool of
keep-alive HTTP/1.1 connections written with raw asyncio sockets; it never talks to anything but 127.0.0.1.

PostgreSQL is a throwaway server from ``tests/_postgres.py`` (skipped with a note when the binaries are missing).
The table goes between ``<!-- bench_service:start -->`` and ``<!-- bench_service:end -->`` in docs/benchmarks.md
(appended when missing); the rest of the file is left alone.

Usage:
    python benchmarks/bench_service.py                         # both backends, 200 req/s for 10 s, write the doc
    python benchmarks/bench_service.py --backends sqlite --print
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from _docs import write_section  # noqa: E402  (benchmarks run as scripts from this folder)

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
SECTION = "## Recipe service"
HOST = "127.0.0.1"
ARCHES = ("hopper", "ampere", "ada", "blackwell")


# -- the database -----------------------------------------------------------------------------------------------------
def hardware(i: int) -> dict[str, Any]:
    arch = ARCHES[i % len(ARCHES)]
    return {"key": f"gpu-{i}", "name": f"GPU {i}", "device_kind": "cuda", "arch_class": arch, "driver_version": "550"}


def seed(url: str, n_recipes: int, n_models: int = 20, n_hardware: int = 5) -> list[str]:
    """Stores ``n_recipes`` recipes over models x hardware; returns the query paths the load generator cycles over."""
    from autoaccel.db import RecipeDB
    from autoaccel.recipes import Recipe

    rng = random.Random(0)
    with RecipeDB(url) as db:
        for i in range(n_recipes):
            model, hw = f"org/model-{i % n_models}", hardware((i // n_models) % n_hardware)
            recipe = Recipe.from_dict(
                {
                    "schema_version": 1,
                    "methods": [{"name": "block_cache", "params": {"threshold": round(rng.uniform(0.05, 0.3), 3)}}],
                    "model_id": model,
                }
            )
            p90 = rng.uniform(0.02, 0.2)
            quality = {"lpips": {"mean": p90 / 2, "p90": p90, "max": p90 + 0.05}, "psnr": {"mean": 30.0}}
            db.add_recipe(recipe, hardware=hw, speedup=rng.uniform(1.2, 3.0), metrics=quality)
    paths = []
    for i in range(200):
        query = {"model": f"org/model-{i % n_models}", "budget": "p90(lpips)<0.2"}
        if i % 5 == 4:  # an unknown device of a known architecture: the same_arch fallback
            query.update(hardware=f"new-gpu-{i}", arch_class=ARCHES[i % len(ARCHES)])
        else:
            query["hardware"] = hardware(i % n_hardware)["key"]
        paths.append("/v1/recipes/best?" + urllib.parse.urlencode(query))
    return paths


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


# As `autoaccel serve` without --verbose: no access log, and no per-request warning for hardware fallbacks (the
# response says `fallback`).
LOG_CONFIG = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"autoaccel.db": {"level": "ERROR"}, "uvicorn": {"level": "WARNING"}},
}


def start_server(url: str, port: int, tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "AUTOACCEL_DB_URL": url, "PYTHONPATH": str(REPO)}
    log_config = tmp / "log.json"
    log_config.write_text(json.dumps(LOG_CONFIG))
    command = [sys.executable, "-m", "uvicorn", "autoaccel.service:create_app", "--factory"]
    command += ["--host", HOST, "--port", str(port), "--no-access-log", "--log-config", str(log_config)]
    server = subprocess.Popen(command, env=env, cwd=REPO)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/v1/ready", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("the service did not become ready within 60 s")


# -- the load generator (runs in its own process) -------------------------------------------------------------------
async def _request(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], path: str) -> int:
    reader, writer = conn
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nAccept: application/json\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = next(int(line.split(":", 1)[1]) for line in lines[1:] if line.lower().startswith("content-length:"))
    await reader.readexactly(length)
    return status


async def _load(port: int, paths: list[str], rate: float, duration: float, connections: int) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pool: asyncio.Queue = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection(HOST, port))
    n = int(rate * duration)
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    t0 = loop.time() + 0.1

    async def one(i: int) -> None:
        due = t0 + i / rate
        await asyncio.sleep(max(0.0, due - loop.time()))
        conn = await pool.get()
        try:
            status = str(await asyncio.wait_for(_request(conn, paths[i % len(paths)]), timeout=10))
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError, StopIteration) as e:
            status = type(e).__name__
            conn[1].close()
            conn = await asyncio.open_connection(HOST, port)
        latencies.append(loop.time() - due)
        statuses[status] = statuses.get(status, 0) + 1
        pool.put_nowait(conn)

    await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(n))), timeout=duration + 60)
    elapsed = loop.time() - t0
    while not pool.empty():
        pool.get_nowait()[1].close()
    return {"latencies": latencies, "statuses": statuses, "elapsed": elapsed, "sent": n}


def load_main(args: argparse.Namespace) -> None:
    paths = json.loads(Path(args.paths).read_text())
    result = asyncio.run(_load(args.port, paths, args.rate, args.duration, args.connections))
    print(json.dumps(result))


def run_load(port: int, paths: list[str], rate: float, duration: float, connections: int) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(paths, f)
    command = [sys.executable, __file__, "--load", "--port", str(port), "--paths", f.name]
    command += ["--rate", str(rate), "--duration", str(duration), "--connections", str(connections)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=True, timeout=duration + 120)
    finally:
        os.unlink(f.name)
    return json.loads(done.stdout)


# -- one backend ----------------------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def bench(backend: str, url: str, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    paths = seed(url, args.recipes)
    port = free_port()
    server = start_server(url, port, tmp)
    try:
        run_load(port, paths, args.rate, min(2.0, args.duration), args.connections)  # warm-up
        result = run_load(port, paths, args.rate, args.duration, args.connections)
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = [x * 1000 for x in result["latencies"]]
    ok = result["statuses"].get("200", 0)
    return {
        "backend": backend,
        "sent": result["sent"],
        "ok": ok,
        "errors": result["sent"] - ok,
        "statuses": result["statuses"],
        "throughput": ok / result["elapsed"],
        "p50": statistics.median(ms),
        "p99": percentile(ms, 99),
        "max": max(ms),
    }


def postgres_url() -> tuple[str | None, Any]:
    sys.path.insert(0, str(REPO))
    try:
        from tests._postgres import start_server as start_postgres

        server = start_postgres()
    except BaseException as e:  # pytest.skip raises a BaseException when the binaries are missing
        print(f"PostgreSQL unavailable: {e}", file=sys.stderr)
        return None, None
    return server.create_database(), server


# -- report ---------------------------------------------------------------------------------------------------------
def table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"Generated {dt.date.today()} by `python benchmarks/bench_service.py --rate {args.rate:g} "
        f"--duration {args.duration:g}`.",
        "",
        f"`GET /v1/recipes/best` at {args.rate:g} requests/s for {args.duration:g} s (open loop, latency from each "
        f"request's due time), {args.connections} keep-alive connections from a second process, {args.recipes} "
        f"recipes over 20 models x 5 devices, 1 request in 5 a same-architecture fallback. One uvicorn process "
        f"(h11, no uvloop), {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs shared with other "
        f"work (load average {load:.1f} at the end). Target: p99 < 25 ms at 200 requests/s.",
        "",
        "| backend | requests | ok | errors | throughput (req/s) | p50 (ms) | p99 (ms) | max (ms) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['backend']} | {r['sent']} | {r['ok']} | {r['errors']} | {r['throughput']:.1f} | {r['p50']:.1f} "
            f"| {r['p99']:.1f} | {r['max']:.1f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--recipes", type=int, default=200)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--print", action="store_true", help="print the table, do not write the doc")
    parser.add_argument("--load", action="store_true", help=argparse.SUPPRESS)  # the load-generator process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--paths", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rate <= 0 or args.duration <= 0 or args.duration > 600:
        parser.error("--rate must be positive and --duration in (0, 600]")
    if args.load:
        load_main(args)
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            server = None
            if backend == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            elif backend == "postgres":
                url, server = postgres_url()
                if url is None:
                    continue
            else:
                parser.error(f"unknown backend {backend!r}; use sqlite and/or postgres")
            try:
                rows.append(bench(backend, url, args, Path(tmp)))
                print(json.dumps(rows[-1]), file=sys.stderr)
            finally:
                if server is not None:
                    server.stop()
    text = table(rows, args)
    print(text)
    if not args.print:
        intro = (
            "`benchmarks/bench_service.py` measures how fast the REST service answers recipe queries under a fixed\n"
            "request rate, on SQLite and on PostgreSQL, over loopback."
        )
        write_section("bench_service", SECTION, text, intro=intro)


if __name__ == "__main__":
    main()
