"""The Redis transport against real redis-server processes, under asyncio and trio.

The module starts its own servers on free ports (a main one with a unix socket, and on demand one
with ``requirepass``, one to restart, one with TLS) unless ``REDIS_URL`` is set, in which case
that server replaces the main one and the tests that need a server of their own still start one.
Keys are namespaced per test and deleted afterwards; nothing is flushed on a server we did not
start.
"""

from __future__ import annotations

import math
import os
import random
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from jdobb_async_queue.backends.redis.resp import (
    InvalidRedisURL,
    RedisAddress,
    RedisAuthError,
    RedisClient,
    RedisConnectionError,
    RedisReplyError,
    RedisTimeoutError,
    Script,
    parse_redis_url,
)

from ._resp_extras import BlockingConnection, pipeline, script_call

pytestmark = pytest.mark.anyio

REDIS_SERVER = shutil.which("redis-server")
EXTERNAL_URL = os.environ.get("REDIS_URL") or None
needs_server = pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not on PATH")
WAIT = 10  # seconds: the bound on every wait in these tests


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# --- servers ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """One redis-server process these tests own."""

    def __init__(self, directory: Path, *extra: str, password: str | None = None) -> None:
        self.port = _free_port()
        self.directory = directory
        self.extra = extra
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Server:
        assert REDIS_SERVER is not None
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", str(self.directory), *self.extra]
        if self.password is not None:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        hello = (
            b"PING\r\n" if self.password is None else f"AUTH {self.password}\r\nPING\r\n".encode()
        )
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self.process is not None
            assert self.process.poll() is None, "redis-server exited"
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(hello)
                    data = b""
                    while b"PONG" not in data and b"-" not in data:
                        chunk = s.recv(256)
                        if not chunk:
                            break
                        data += chunk
                    if b"+PONG" in data:
                        return
            except OSError:
                pass
            time.sleep(0.02)  # polling a starting process, not synchronising tasks
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


@pytest.fixture(scope="module")
def own_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # A short path: unix socket paths are limited to ~100 bytes.
    return Path(tmp_path_factory.mktemp("resp"))


@pytest.fixture(scope="module")
def main_server(own_dir: Path) -> Iterator[Server | None]:
    """Our own server (with a unix socket), or None when REDIS_URL names one."""
    if EXTERNAL_URL is not None or REDIS_SERVER is None:
        yield None
        return
    sock = own_dir / "redis.sock"
    server = Server(own_dir, "--unixsocket", str(sock), "--unixsocketperm", "700").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_url(main_server: Server | None) -> str:
    if main_server is not None:
        return main_server.url
    if EXTERNAL_URL is None:
        pytest.skip("redis-server is not on PATH and REDIS_URL is not set")
    return EXTERNAL_URL


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH")
    server = Server(tmp_path_factory.mktemp("pw"), password="s3cret:pw@x").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def restartable_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH")
    server = Server(tmp_path_factory.mktemp("restart")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ns() -> str:
    return f"resp-test:{uuid.uuid4().hex[:10]}:"


@pytest.fixture
async def client(redis_url: str, ns: str) -> AsyncIterator[RedisClient]:
    async with RedisClient.from_url(redis_url, command_timeout=WAIT) as c:
        yield c
        with anyio.fail_after(WAIT):
            keys = await c.execute("KEYS", ns + "*")
            if keys:
                await c.execute("DEL", *keys)


# --- URLs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://localhost", RedisAddress(host="localhost")),
        (
            "redis://:p%40ss@example.com:6380/2",
            RedisAddress(host="example.com", port=6380, db=2, password="p@ss"),
        ),
        ("redis://alice:pw@h/0", RedisAddress(host="h", username="alice", password="pw")),
        ("redis://h?db=4", RedisAddress(host="h", db=4)),
        ("rediss://h:7000", RedisAddress(host="h", port=7000, tls=True)),
        ("redis://[::1]:6390/1", RedisAddress(host="::1", port=6390, db=1)),
        ("unix:///tmp/r.sock", RedisAddress(path="/tmp/r.sock")),
        (
            "unix:///tmp/r.sock?db=3&password=x",
            RedisAddress(path="/tmp/r.sock", db=3, password="x"),
        ),
        ("unix://u:pw@/tmp/r.sock", RedisAddress(path="/tmp/r.sock", username="u", password="pw")),
    ],
)
def test_parse_redis_url(url: str, expected: RedisAddress) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost",
        "redis://",
        "redis://h:port",
        "redis://h:99999",
        "redis://h/abc",
        "redis://h/-1",
        "redis://h/1?db=2",
        "redis://h?foo=1",
        "redis://h?db=1&db=2",
        "redis://user@h",
        "redis://h#frag",
        "unix://relative/r.sock",
        "unix://",
        "redis://[::1",
    ],
)
def test_bad_url_raises_typed_error(url: str) -> None:
    with pytest.raises(InvalidRedisURL) as info:
        parse_redis_url(url)
    assert isinstance(info.value, ValueError)


def test_bad_url_error_hides_password() -> None:
    with pytest.raises(InvalidRedisURL) as info:
        RedisClient.from_url("redis://bob:topsecret@h/notadb")
    assert "topsecret" not in str(info.value)
    assert "topsecret" not in repr(parse_redis_url("redis://bob:topsecret@h/1"))


def test_ssl_context_needs_tls_url() -> None:
    with pytest.raises(InvalidRedisURL):
        RedisClient.from_url("redis://h", ssl_context=ssl.create_default_context())


# --- commands -----------------------------------------------------------------------------------


async def test_execute_and_pipeline_round_trip(client: RedisClient, ns: str) -> None:
    with anyio.fail_after(WAIT):
        assert await client.execute("PING") == b"PONG"
        assert await client.execute("SET", ns + "a", "é") == b"OK"
        assert await client.execute("GET", ns + "a") == "é".encode()
        assert await client.execute("GET", ns + "missing") is None
        assert await client.execute("INCRBY", ns + "n", 5) == 5
        assert await client.execute("INCRBYFLOAT", ns + "f", 1.5) == b"1.5"
        replies = await pipeline(
            client,
            [("SET", ns + "b", b"\x00\xff"), ("GET", ns + "b"), ["RPUSH", ns + "l", 1, 2, 3]],
        )
        assert replies == [b"OK", b"\x00\xff", 3]
        assert await client.execute("LRANGE", ns + "l", 0, -1) == [b"1", b"2", b"3"]
        assert await pipeline(client, []) == []


async def test_error_replies(client: RedisClient, ns: str) -> None:
    with anyio.fail_after(WAIT):
        await client.execute("SET", ns + "s", "x")
        with pytest.raises(RedisReplyError) as info:
            await client.execute("LPUSH", ns + "s", "y")
        assert info.value.code == "WRONGTYPE"
        replies = await pipeline(
            client,
            [("GET", ns + "s"), ("LPUSH", ns + "s", "y"), ("NOSUCHCOMMAND",), ("GET", ns + "s")],
        )
        assert replies[0] == b"x"
        assert isinstance(replies[1], RedisReplyError)
        assert replies[1].code == "WRONGTYPE"
        assert isinstance(replies[2], RedisReplyError)
        assert replies[2].code == "ERR"
        assert replies[3] == b"x"
        with pytest.raises(TypeError):
            await client.execute("SET", ns + "s", None)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            await pipeline(client, ["PING"])
        with pytest.raises(TypeError):
            await client.evalsha(Script("return 1"), ns + "s")
        assert await client.execute("GET", ns + "s") == b"x"  # still in step


async def test_evalsha_falls_back_on_noscript(
    client: RedisClient, ns: str, main_server: Server | None
) -> None:
    # A unique source, so the script is surely not cached even on a server we must not flush.
    script = Script(
        f"-- {ns}\nredis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[2])"
    )
    with anyio.fail_after(WAIT):
        if main_server is not None:
            assert await client.execute("SCRIPT", "FLUSH") == b"OK"
        assert await client.execute("SCRIPT", "EXISTS", script.sha) == [0]
        assert await client.evalsha(script, [ns + "k1", ns + "k1"], ["v"]) == b"v"
        assert await client.execute("SCRIPT", "EXISTS", script.sha) == [1]
        assert await client.evalsha(script, [ns + "k2", ns + "k1"], ["w"]) == b"v"

        if main_server is not None:
            await client.execute("SCRIPT", "FLUSH")
        else:
            script = Script(script.source + "\n-- again")
        failing = Script(f"-- {ns} failing\nreturn redis.error_reply('NOPE it failed')")
        replies = await pipeline(
            client,
            [
                script_call(script, [ns + "k3", ns + "k3"], [b"x"]),
                ("GET", ns + "k3"),
                script_call(failing),
                script_call(script, [ns + "k4", ns + "k3"], [b"y"]),
            ],
        )
        # The first call did not run (NOSCRIPT), so GET saw nothing; it ran on the retry.
        assert replies[:2] == [b"x", None]
        assert replies[3] == b"x"
        assert isinstance(replies[2], RedisReplyError)
        assert replies[2].code == "NOPE"
        with pytest.raises(RedisReplyError, match="NOPE"):
            await client.evalsha(failing)


async def test_concurrent_callers_each_get_their_own_reply(redis_url: str, ns: str) -> None:
    results: dict[int, Any] = {}

    async def caller(i: int, c: RedisClient) -> None:
        if i % 3 == 0:
            results[i] = await pipeline(
                c, [("SET", f"{ns}{i}", i), ("INCR", f"{ns}{i}"), ("ECHO", f"p{i}")]
            )
        else:
            results[i] = await c.execute("ECHO", f"e{i}")

    async with RedisClient.from_url(redis_url, pool_size=4, command_timeout=WAIT) as c:
        with anyio.fail_after(WAIT):
            for _ in range(3):
                results.clear()
                async with anyio.create_task_group() as tg:
                    for i in range(200):
                        tg.start_soon(caller, i, c)
                for i in range(200):
                    if i % 3 == 0:
                        assert results[i] == [b"OK", i + 1, f"p{i}".encode()]
                    else:
                        assert results[i] == f"e{i}".encode()
                assert len(c._conns) <= 4
            await c.execute("DEL", *[f"{ns}{i}" for i in range(0, 200, 3)])


async def test_random_cancellations_never_mix_up_replies(redis_url: str) -> None:
    """Many callers on two connections, cancelled at random moments (while queued, writing,
    leading or reading; some replies span several reads): every caller that finishes gets its
    own reply, nobody gets a connection error, and the pool stays in step."""
    rng = random.Random(20241123)
    outcome = {"ok": 0, "cancelled": 0}

    async def caller(i: int, c: RedisClient, delay: float, size: int) -> None:
        payload = f"{i}:" + "x" * size
        with anyio.move_on_after(delay) as scope:
            if i % 4 == 0:
                replies = await pipeline(c, [("ECHO", payload), ("ECHO", str(i))])
                assert replies == [payload.encode(), str(i).encode()]
            else:
                assert await c.execute("ECHO", payload) == payload.encode()
        outcome["cancelled" if scope.cancelled_caught else "ok"] += 1

    async with RedisClient.from_url(redis_url, pool_size=2) as c:
        with anyio.fail_after(WAIT * 3):
            for _ in range(4):
                async with anyio.create_task_group() as tg:
                    for i in range(300):
                        delay = rng.choice([0.0001, 0.0005, 0.001, 0.003, WAIT])
                        tg.start_soon(caller, i, c, delay, rng.choice([0, 10, 70_000]))
                assert await c.execute("ECHO", "in step") == b"in step"
                assert len(c._conns) <= 2
    assert outcome["ok"] > 100
    assert outcome["cancelled"] > 100


async def test_tcp_keepalive_is_on(client: RedisClient) -> None:
    with anyio.fail_after(WAIT):
        await client.execute("PING")
    (conn,) = client._conns
    sock = conn.stream.extra(anyio.abc.SocketAttribute.raw_socket)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)


async def test_command_timeout_raises_typed_error_and_keeps_step(
    client: RedisClient, ns: str
) -> None:
    with anyio.fail_after(WAIT):
        with pytest.raises(RedisTimeoutError):
            await client.execute("BLPOP", ns + "never", 1, timeout=0.05)
        assert await client.execute("ECHO", "after") == b"after"
        assert await client.execute("BLPOP", ns + "never", 0.01, timeout=math.inf) is None


# --- cancellation -------------------------------------------------------------------------------


async def test_cancelled_call_discards_connection(client: RedisClient, ns: str) -> None:
    with anyio.fail_after(WAIT):
        await client.execute("SET", ns + "k", "v")
        with anyio.move_on_after(0.05) as scope:
            await client.execute("BLPOP", ns + "never", 5)
        assert scope.cancelled_caught
        assert not client._conns  # the only connection was out of step: closed
        assert await client.execute("PING") == b"PONG"
        assert await client.execute("GET", ns + "k") == b"v"
        assert await pipeline(client, [("ECHO", "a"), ("ECHO", "b")]) == [b"a", b"b"]


async def test_cancelled_blpop_on_blocking_connection(client: RedisClient, ns: str) -> None:
    with anyio.fail_after(WAIT):
        async with BlockingConnection(client) as conn:
            with anyio.move_on_after(0.05) as scope:
                await conn.execute("BLPOP", ns + "q", 5)
            assert scope.cancelled_caught
            assert await conn.execute("ECHO", "next") == b"next"
            await client.execute("RPUSH", ns + "q2", "item")
            assert await conn.execute("BLPOP", ns + "q2", 5) == [(ns + "q2").encode(), b"item"]
            with pytest.raises(RedisTimeoutError):
                await conn.execute("BLPOP", ns + "q", 5, timeout=0.05)
            assert await conn.execute("PING") == b"PONG"


async def test_blocking_connection_does_not_stall_the_pool(client: RedisClient, ns: str) -> None:
    with anyio.fail_after(WAIT):
        async with BlockingConnection(client) as conn, anyio.create_task_group() as tg:
            got: list[Any] = []

            async def pop() -> None:
                got.append(await conn.execute("BLPOP", ns + "q", 5))

            tg.start_soon(pop)
            await anyio.wait_all_tasks_blocked()
            for i in range(20):  # the pool keeps serving while BLPOP blocks
                assert await client.execute("ECHO", str(i)) == str(i).encode()
            await client.execute("RPUSH", ns + "q", "x")
        assert got == [[(ns + "q").encode(), b"x"]]


async def test_cancelled_reader_hands_reading_to_the_next_caller(redis_url: str, ns: str) -> None:
    """With one connection: a gate call holds it while A (a blocking pop), B and C queue; they go
    out as one pipeline with A reading. Cancelling A must not fail B or C, nor close the
    connection: B takes over reading, skips A's reply when it comes, and the pipe stays in step."""
    async with RedisClient.from_url(redis_url, pool_size=1, command_timeout=WAIT) as c:
        with anyio.fail_after(WAIT):
            await c.execute("PING")
            (conn,) = c._conns
            results: dict[str, Any] = {}

            async def call(name: str, *args: Any) -> None:
                results[name] = await c.execute(*args)

            async with anyio.create_task_group() as tg:
                tg.start_soon(call, "gate", "BLPOP", ns + "gate", 5)
                await anyio.wait_all_tasks_blocked()
                scope_a = anyio.CancelScope()

                async def call_a() -> None:
                    with scope_a:
                        await call("A", "BLPOP", ns + "a", 5)

                tg.start_soon(call_a)
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(call, "B", "ECHO", "b")
                await anyio.wait_all_tasks_blocked()
                tg.start_soon(call, "C", "ECHO", "c")
                await anyio.wait_all_tasks_blocked()
                async with RedisClient.from_url(redis_url) as other:
                    await other.execute("RPUSH", ns + "gate", "open")
                    await anyio.wait_all_tasks_blocked()  # A, B, C are now one pipeline
                    scope_a.cancel()
                    await anyio.wait_all_tasks_blocked()
                    await other.execute("RPUSH", ns + "a", "for-a")
            assert "A" not in results
            assert results == {"gate": [(ns + "gate").encode(), b"open"], "B": b"b", "C": b"c"}
            assert c._conns == {conn}  # kept: it never went out of step
            assert await c.execute("ECHO", "d") == b"d"
            assert await c.execute("LLEN", ns + "a") == 0  # A's pop did run; its reply was dropped


# --- pub/sub ------------------------------------------------------------------------------------


async def test_pubsub_messages_and_subscription_changes(client: RedisClient, ns: str) -> None:
    ch1, ch2 = ns + "ch1", ns + "ch2"
    with anyio.fail_after(WAIT):
        async with client.pubsub() as ps:
            await ps.subscribe(ch1)
            assert await client.execute("PUBLISH", ch1, "hello") == 1
            assert await ps.get_message() == (ch1.encode(), b"hello")

            received: list[tuple[bytes, bytes]] = []
            got_two = anyio.Event()

            async def consume() -> None:
                while len(received) < 2:
                    received.append(await ps.get_message())
                got_two.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(consume)
                await anyio.wait_all_tasks_blocked()
                # Subscribe and unsubscribe while another task is waiting for messages.
                await ps.subscribe(ch2)
                await ps.unsubscribe(ch1)
                await client.execute("PUBLISH", ch1, "dropped")
                await client.execute("PUBLISH", ch2, "two")
                await client.execute("PUBLISH", ch2, "last")
                await got_two.wait()
            assert received == [(ch2.encode(), b"two"), (ch2.encode(), b"last")]
            await ps.unsubscribe()
            assert await client.execute("PUBLISH", ch2, "nobody") == 0


async def test_pubsub_get_message_is_cancel_safe(client: RedisClient, ns: str) -> None:
    with anyio.fail_after(WAIT):
        async with client.pubsub() as ps:
            await ps.subscribe(ns + "c")
            with anyio.move_on_after(0.05) as scope:
                await ps.get_message()
            assert scope.cancelled_caught
            await client.execute("PUBLISH", ns + "c", "1")
            await client.execute("PUBLISH", ns + "c", "2")
            assert await ps.get_message() == ((ns + "c").encode(), b"1")
            assert await ps.get_message() == ((ns + "c").encode(), b"2")
            assert ps.reconnects == 0


# --- authentication, unix sockets, TLS ----------------------------------------------------------


async def test_auth_with_password(password_server: Server) -> None:
    port, password = password_server.port, password_server.password
    assert password is not None
    good = f"redis://:{password.replace(':', '%3A').replace('@', '%40')}@127.0.0.1:{port}/3"
    with anyio.fail_after(WAIT):
        async with RedisClient.from_url(good) as c:
            assert await c.execute("PING") == b"PONG"
            assert b" db=3 " in await c.execute("CLIENT", "INFO")
        async with RedisClient.from_url(f"redis://:wrong@127.0.0.1:{port}") as c:
            with pytest.raises(RedisAuthError):
                await c.execute("PING")
        async with RedisClient.from_url(f"redis://127.0.0.1:{port}") as c:
            with pytest.raises(RedisAuthError, match="NOAUTH"):
                await c.execute("PING")


async def test_auth_with_acl_user(password_server: Server, ns: str) -> None:
    admin = f"redis://:{password_server.password}@127.0.0.1:{password_server.port}"
    admin = admin.replace("s3cret:pw@x", "s3cret%3Apw%40x")
    user = "u" + uuid.uuid4().hex[:8]
    with anyio.fail_after(WAIT):
        async with RedisClient.from_url(admin) as c:
            await c.execute("ACL", "SETUSER", user, "on", ">userpw", "~*", "&*", "+@all")
            try:
                url = f"redis://{user}:userpw@127.0.0.1:{password_server.port}/0"
                async with RedisClient.from_url(url) as uc:
                    assert await uc.execute("ACL", "WHOAMI") == user.encode()
                bad = f"redis://{user}:nope@127.0.0.1:{password_server.port}/0"
                async with RedisClient.from_url(bad) as uc:
                    with pytest.raises(RedisAuthError, match="WRONGPASS"):
                        await uc.execute("PING")
            finally:
                await c.execute("ACL", "DELUSER", user)


async def test_unix_socket(main_server: Server | None, client: RedisClient, ns: str) -> None:
    if main_server is None:
        pytest.skip("needs the module's own redis-server (REDIS_URL is set)")
    sock = main_server.directory / "redis.sock"
    with anyio.fail_after(WAIT):
        async with RedisClient.from_url(f"unix://{sock}?db=1") as uc:
            assert await uc.execute("SET", ns + "u", "via-unix") == b"OK"
            assert await pipeline(uc, [("GET", ns + "u"), ("DEL", ns + "u")]) == [b"via-unix", 1]
            assert b"db=1" in await uc.execute("CLIENT", "INFO")


async def test_tls(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme", reason="trustme makes the test certificates")
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not on PATH")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_pem.write_to_path(tmp_path / "key.pem")
    cert.cert_chain_pems[0].write_to_path(tmp_path / "cert.pem")
    ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    tls_port = _free_port()
    server = Server(
        tmp_path, "--tls-port", str(tls_port), "--tls-cert-file", str(tmp_path / "cert.pem"),
        "--tls-key-file", str(tmp_path / "key.pem"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    try:
        server.start()
    except (RuntimeError, AssertionError):
        pytest.skip("this redis-server was built without TLS support")
    try:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        with anyio.fail_after(WAIT):
            async with RedisClient.from_url(
                f"rediss://127.0.0.1:{tls_port}/0", ssl_context=context
            ) as c:
                assert await c.execute("PING") == b"PONG"
                assert await pipeline(c, [("ECHO", "x" * 100_000), ("ECHO", "y")]) == [
                    b"x" * 100_000,
                    b"y",
                ]
            # Untrusted certificate: refused at once, no retries.
            untrusted = RedisClient.from_url(
                f"rediss://127.0.0.1:{tls_port}/0", ssl_context=ssl.create_default_context()
            )
            async with untrusted:
                with pytest.raises(RedisConnectionError) as info:
                    await untrusted.execute("PING")
                assert "1 attempt" in str(info.value)
    finally:
        server.stop()


# --- failures and reconnects --------------------------------------------------------------------


async def test_reconnects_after_server_restart(restartable_server: Server) -> None:
    server = restartable_server
    with anyio.fail_after(WAIT * 2):
        async with RedisClient.from_url(
            server.url, connect_attempts=50, backoff_initial=0.01, backoff_max=0.1
        ) as c:
            assert await c.execute("SET", "k", "before") == b"OK"
            async with c.pubsub() as ps:
                await ps.subscribe("events")
                server.stop()
                server.start()
                # The first call may hit the dead connection: Redis cannot tell whether it ran,
                # so it is not retried silently. The idle ones die with it: one failure at most.
                failures = 0
                for _ in range(3):
                    try:
                        assert await c.execute("PING") == b"PONG"
                    except RedisConnectionError:
                        failures += 1
                assert failures <= 1
                assert await c.execute("GET", "k") is None  # a new server: nothing persisted
                # The subscriber reconnects and resubscribes by itself, whichever of several
                # tasks using it notices first.
                got: list[tuple[bytes, bytes]] = []

                async def consume() -> None:
                    got.append(await ps.get_message())

                async with anyio.create_task_group() as tg:
                    tg.start_soon(consume)
                    tg.start_soon(consume)
                    await anyio.wait_all_tasks_blocked()
                    await ps.subscribe("more")  # returns once the new connection confirmed all
                    assert await c.execute("PUBLISH", "events", "after") == 1
                    assert await c.execute("PUBLISH", "more", "too") == 1
                assert sorted(got) == [(b"events", b"after"), (b"more", b"too")]
                assert ps.reconnects == 1


async def test_unreachable_server_raises_after_attempts(restartable_server: Server) -> None:
    server = restartable_server
    server.stop()
    with anyio.fail_after(WAIT):
        async with RedisClient.from_url(
            server.url, connect_attempts=3, backoff_initial=0.01, backoff_max=0.02
        ) as c:
            with pytest.raises(RedisConnectionError, match="after 3 attempt"):
                await c.execute("PING")
            server.start()
            assert await c.execute("PING") == b"PONG"


async def test_connect_timeout(anyio_backend: str) -> None:
    """A server that accepts the TCP connection but never answers AUTH/PING."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        with anyio.fail_after(WAIT):
            async with RedisClient.from_url(
                f"redis://127.0.0.1:{port}", connect_timeout=0.05, connect_attempts=2,
                backoff_initial=0.01,
            ) as c:  # fmt: skip
                with pytest.raises(RedisConnectionError) as info:
                    await c.execute("PING")
                assert isinstance(info.value.__cause__, RedisTimeoutError)


async def test_aclose_fails_calls_in_flight_and_after(redis_url: str) -> None:
    with anyio.fail_after(WAIT):
        c = RedisClient.from_url(redis_url, pool_size=1)
        errors: list[BaseException] = []

        async def call(*args: Any) -> None:
            try:
                await c.execute(*args)
            except RedisConnectionError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "BLPOP", "resp-test:never", 1)  # in flight
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(call, "PING")  # queued
            await anyio.wait_all_tasks_blocked()
            await c.aclose()
        assert len(errors) == 2
        with pytest.raises(RedisConnectionError, match="closed"):
            await c.execute("PING")
