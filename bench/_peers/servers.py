"""The stores one run of ``bench/compare.py`` uses, all its own and all removed at the end:
private redis-servers (the control one and the one under test) on free ports in a temp dir,
a PostgreSQL database ``bench_<run>_<n>`` per measurement on ``PG_URL``'s server, and SQLite
files in a temp dir."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from urllib.parse import urlsplit, urlunsplit

from . import record


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """``redis-server`` on a free port: no persistence, FLUSHALLed before each measurement."""

    def __init__(self, name: str) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("redis-server is not on PATH (apt-get install redis-server)")
        self.dir = tempfile.mkdtemp(prefix=f"compare-{name}-")
        self.port = free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"redis://127.0.0.1:{self.port}/0"
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client = record.sync_client(self.url)
                self.client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    self.close()
                    raise SystemExit(f"redis-server ({name}) did not start") from None
                time.sleep(0.05)
        self.version = str(self.client.info("server")["redis_version"])

    def flush(self) -> None:
        self.client.flushall()

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Postgres:
    """Creates and drops this run's databases on the server of ``url`` (psycopg 3)."""

    def __init__(self, url: str, run_id: str) -> None:
        import psycopg

        self.url = url
        self.run_id = run_id
        self.count = 0
        self.conn = psycopg.connect(url, autocommit=True, connect_timeout=5)
        self.version = str(self.conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]

    def create(self) -> str:
        """A new empty database; its URL."""
        self.count += 1
        name = f"bench_{self.run_id}_{self.count}"
        self.conn.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(self.url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def drop(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def close(self) -> None:
        """Drops anything of this run still there, then disconnects."""
        rows = self.conn.execute(
            "SELECT datname FROM pg_database WHERE datname LIKE %s",
            (f"bench\\_{self.run_id}\\_%",),
        ).fetchall()
        for (name,) in rows:
            self.conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.conn.close()
