"""Redis round trips per second from one sequential caller: the backend's transport against the
floor (a bare anyio stream + hiredis loop), coredis, and a blocking socket; plus a pipelined case
(many concurrent callers sharing the transport's pool).

Each cell runs one caller in a loop for ``--seconds`` and reports calls per second. The command
is EVALSHA of a small two-key script (what a single enqueue costs) and PING. The target: the
transport within 1.5x of the bare anyio + hiredis round trip on the same event loop.

    python bench/redis_roundtrip.py [--seconds 1.2] [--callers 100]

Starts its own redis-server on a free port (``--save "" --appendonly no``) unless ``REDIS_URL``
is set (TCP URLs only here), and stops it at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import hiredis

try:
    from jdobb_async_queue.backends.redis.resp import (
        RedisAddress,
        RedisClient,
        Script,
        parse_redis_url,
    )
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from jdobb_async_queue.backends.redis.resp import (
        RedisAddress,
        RedisClient,
        Script,
        parse_redis_url,
    )

SCRIPT = Script("redis.call('INCR', KEYS[1]) return redis.call('GET', KEYS[2])")
KEYS = ("bench:rt:counter", "bench:rt:value")
ARGS = ("x",)
_pack: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command
EVALSHA = _pack(("EVALSHA", SCRIPT.sha, 2, *KEYS, *ARGS))
PING = _pack(("PING",))
LOOPS: list[tuple[str, str, dict[str, Any]]] = [
    ("asyncio", "asyncio", {}),
    ("trio", "trio", {}),
]
try:
    import uvloop  # noqa: F401

    LOOPS.insert(1, ("uvloop", "asyncio", {"use_uvloop": True}))
except ImportError:
    pass


# --- the server -----------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_server() -> Iterator[RedisAddress]:
    url = os.environ.get("REDIS_URL")
    if url:
        address = parse_redis_url(url)
        if address.host is None or address.tls:
            sys.exit("this benchmark needs a plain redis:// REDIS_URL")
        yield address
        return
    exe = shutil.which("redis-server")
    if exe is None:
        sys.exit("redis-server is not on PATH and REDIS_URL is not set")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    with tempfile.TemporaryDirectory(prefix="bench-redis-") as tmp:
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            _wait_ready(port)
            yield RedisAddress(host="127.0.0.1", port=port)
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _wait_ready(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as s:
            s.sendall(PING)
            if s.recv(64).startswith(b"+PONG"):
                return
        time.sleep(0.02)
    sys.exit("redis-server did not start")


def _handshake_payload(address: RedisAddress) -> tuple[bytes, int]:
    commands: list[tuple[Any, ...]] = []
    if address.password is not None:
        user = () if address.username is None else (address.username,)
        commands.append(("AUTH", *user, address.password))
    if address.db:
        commands.append(("SELECT", address.db))
    return b"".join(_pack(c) for c in commands), len(commands)


def sync_call(address: RedisAddress, command: tuple[Any, ...]) -> Any:
    """One command on a fresh blocking connection (setup and clean-up only)."""
    hello, count = _handshake_payload(address)
    reader = hiredis.Reader()
    with socket.create_connection((address.host or "", address.port), 10) as sock:
        sock.sendall(hello + _pack(command))
        replies: list[Any] = []
        while len(replies) <= count:
            reply = reader.gets()
            if reply is False:
                reader.feed(sock.recv(65536))
            else:
                replies.append(check(reply))
    return replies[-1]


# --- timing ---------------------------------------------------------------------------------------


@dataclass
class Sample:
    rate: float  # calls per second (wall clock)
    cpu_us: float  # this process's CPU per call: client overhead, little affected by other load

    def best(self, other: Sample | None) -> Sample:
        if other is None:
            return self
        return Sample(max(self.rate, other.rate), min(self.cpu_us, other.cpu_us))


async def measure(call: Callable[[], Awaitable[Any]], seconds: float) -> Sample:
    n = 0
    start, cpu = time.perf_counter(), time.process_time()
    end = start + seconds
    while True:
        for _ in range(50):
            await call()
        n += 50
        now = time.perf_counter()
        if now >= end:
            return Sample(n / (now - start), (time.process_time() - cpu) / n * 1e6)


def measure_sync(call: Callable[[], Any], seconds: float) -> Sample:
    n = 0
    start, cpu = time.perf_counter(), time.process_time()
    end = start + seconds
    while True:
        for _ in range(50):
            call()
        n += 50
        now = time.perf_counter()
        if now >= end:
            return Sample(n / (now - start), (time.process_time() - cpu) / n * 1e6)


def check(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


# --- the contenders: each opens its client and returns its two calls ----------------------------

Calls = dict[str, Callable[[], Awaitable[Any]]]


async def open_bare(stack: contextlib.AsyncExitStack, address: RedisAddress) -> Calls:
    """The floor: one anyio stream, hiredis, nothing else."""
    assert address.host is not None
    stream = await stack.enter_async_context(await anyio.connect_tcp(address.host, address.port))
    reader = hiredis.Reader()

    async def once(payload: bytes) -> Any:
        await stream.send(payload)
        reply = reader.gets()
        while reply is False:
            reader.feed(await stream.receive(65536))
            reply = reader.gets()
        return reply

    hello, count = _handshake_payload(address)
    if count:
        await stream.send(hello)
        for _ in range(count):
            check(await once(b""))
    return {"EVALSHA": lambda: once(EVALSHA), "PING": lambda: once(PING)}


def opener(timeout: float | None) -> Callable[..., Awaitable[Calls]]:
    async def open_transport(stack: contextlib.AsyncExitStack, address: RedisAddress) -> Calls:
        client = await stack.enter_async_context(RedisClient(address, command_timeout=timeout))
        return {
            "EVALSHA": lambda: client.evalsha(SCRIPT, KEYS, ARGS),
            "PING": lambda: client.execute("PING"),
        }

    return open_transport


async def open_coredis(stack: contextlib.AsyncExitStack, address: RedisAddress) -> Calls:
    import coredis

    client: Any = await stack.enter_async_context(
        coredis.Redis(
            host=address.host,
            port=address.port,
            db=address.db,
            username=address.username,
            password=address.password,
        )
    )
    return {
        "EVALSHA": lambda: client.evalsha(SCRIPT.sha, KEYS, ARGS),
        "PING": lambda: client.ping(),
    }


CONTENDERS: list[tuple[str, Callable[..., Awaitable[Calls]]]] = [
    ("bare anyio stream + hiredis (floor)", open_bare),
    ("transport (redis.resp)", opener(None)),
    ("transport (redis.resp), command_timeout=30", opener(30.0)),
    ("coredis 6.9", open_coredis),
]


async def bench_loop(
    address: RedisAddress, loop: str, seconds: float, rounds: int
) -> dict[tuple[str, str], Sample]:
    """Every contender on this loop, interleaved round by round so that they all see the same
    background load; the best round counts."""
    best: dict[tuple[str, str], Sample] = {}
    async with contextlib.AsyncExitStack() as stack:
        contenders: list[tuple[str, Calls]] = []
        for name, open_ in CONTENDERS:
            if name.startswith("coredis") and loop == "uvloop":
                continue
            try:
                calls = await open_(stack, address)
            except ImportError:
                continue
            for call in calls.values():  # warm up
                for _ in range(200):
                    check(await call())
            contenders.append((name, calls))
        for _ in range(rounds):
            for name, calls in contenders:
                for op, call in calls.items():
                    sample = await measure(call, seconds / rounds)
                    best[name, op] = sample.best(best.get((name, op)))
    return best


def bench_blocking(address: RedisAddress, seconds: float, rounds: int) -> dict[str, Sample]:
    assert address.host is not None
    best: dict[str, Sample] = {}
    with socket.create_connection((address.host, address.port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = hiredis.Reader()

        def once(payload: bytes) -> Any:
            if payload:
                sock.sendall(payload)
            reply = reader.gets()
            while reply is False:
                reader.feed(sock.recv(65536))
                reply = reader.gets()
            return reply

        hello, count = _handshake_payload(address)
        if count:
            sock.sendall(hello)
            for _ in range(count):
                check(once(b""))
        for _ in range(rounds):
            for op, payload in (("EVALSHA", EVALSHA), ("PING", PING)):
                sample = measure_sync(lambda p=payload: once(p), seconds / rounds)  # type: ignore[misc]
                best[op] = sample.best(best.get(op))
    return best


async def bench_concurrent(address: RedisAddress, seconds: float, callers: int) -> Sample:
    """``callers`` tasks each calling EVALSHA in a loop on one client; total calls per second."""
    count = 0
    async with RedisClient(address) as client:

        async def caller(until: float) -> None:
            nonlocal count
            while time.perf_counter() < until:
                check(await client.evalsha(SCRIPT, KEYS, ARGS))
                count += 1

        async with anyio.create_task_group() as tg:  # warm up
            for _ in range(callers):
                tg.start_soon(caller, time.perf_counter() + 0.2)
        count = 0
        start, cpu = time.perf_counter(), time.process_time()
        async with anyio.create_task_group() as tg:
            for _ in range(callers):
                tg.start_soon(caller, start + seconds)
        return Sample(
            count / (time.perf_counter() - start), (time.process_time() - cpu) / count * 1e6
        )


# --- the table ------------------------------------------------------------------------------------


@dataclass
class Row:
    case: str
    loop: str
    evalsha: Sample
    ping: Sample | None
    floor: Sample | None


def run(address: RedisAddress, seconds: float, rounds: int, callers: int) -> list[Row]:
    sync_call(address, ("SCRIPT", "LOAD", SCRIPT.source))
    rows: list[Row] = []
    for loop, backend, options in LOOPS:
        best = anyio.run(
            bench_loop, address, loop, seconds, rounds, backend=backend, backend_options=options
        )
        floor = best[CONTENDERS[0][0], "EVALSHA"]
        for name, _ in CONTENDERS:
            if (name, "EVALSHA") in best:
                is_floor = name == CONTENDERS[0][0]
                rows.append(
                    Row(
                        name,
                        loop,
                        best[name, "EVALSHA"],
                        best[name, "PING"],
                        None if is_floor else floor,
                    )
                )
    blocking = bench_blocking(address, seconds, rounds)
    rows.append(
        Row("blocking socket + hiredis", "(none)", blocking["EVALSHA"], blocking["PING"], None)
    )
    for loop, backend, options in LOOPS:
        sample = anyio.run(
            bench_concurrent, address, seconds, callers, backend=backend, backend_options=options
        )
        rows.append(
            Row(f"transport, {callers} concurrent callers, pool of 4", loop, sample, None, None)
        )
    return rows


def render(rows: list[Row]) -> str:
    header = (
        "case", "loop", "EVALSHA/s", "us/call", "client CPU us/call", "PING/s",
        "floor/this (wall)", "this/floor (CPU)",
    )  # fmt: skip
    table = [header]
    for r in rows:
        table.append(
            (
                r.case,
                r.loop,
                f"{r.evalsha.rate:,.0f}",
                f"{1e6 / r.evalsha.rate:.0f}",
                f"{r.evalsha.cpu_us:.0f}",
                "" if r.ping is None else f"{r.ping.rate:,.0f}",
                "" if r.floor is None else f"{r.floor.rate / r.evalsha.rate:.2f}x",
                "" if r.floor is None else f"{r.evalsha.cpu_us / r.floor.cpu_us:.2f}x",
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    lines = []
    for n, row in enumerate(table):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append(" | ".join(cells))
        if n == 0:
            lines.append("-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=1.2, help="per cell (default 1.2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per cell")
    parser.add_argument("--callers", type=int, default=100, help="for the pipelined case")
    options = parser.parse_args()
    started = time.perf_counter()
    with redis_server() as address:
        try:
            rows = run(address, options.seconds, options.rounds, options.callers)
        finally:
            with contextlib.suppress(OSError):
                sync_call(address, ("DEL", *KEYS))
    print(
        f"Python {sys.version.split()[0]}, hiredis {hiredis.__version__}, anyio {anyio_version()}"
    )
    print(render(rows))
    print(f"({time.perf_counter() - started:.0f} s)")


def anyio_version() -> str:
    from importlib.metadata import version

    return version("anyio")


if __name__ == "__main__":
    main()
