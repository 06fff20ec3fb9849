"""PostgreSQL for the tests: the server at ``PG_URL`` (default the local one on 127.0.0.1:5432),
or, when none answers, a throwaway cluster the tests start themselves (``initdb`` + ``pg_ctl``
from Debian's packages) on a free port in a temp dir.

The tests never touch what they did not create: each works in a namespace (a PostgreSQL schema)
of its own and drops only that schema.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ._redis_server import free_port

__all__ = ["DEFAULT_PG_URL", "PostgresServer", "answers", "pg_bin"]

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def answers(url: str) -> bool:
    """Whether a PostgreSQL server takes connections at ``url``."""
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def pg_bin(tool: str) -> str:
    """The newest installed ``tool`` (initdb, pg_ctl, ...) of Debian's PostgreSQL packages."""
    found = shutil.which(tool)
    if found:
        return found
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(f"{directory}/{tool}", os.X_OK):
            return f"{directory}/{tool}"
    raise RuntimeError(f"{tool} not found: .ci/run installs Debian's postgresql")


@dataclass
class PostgresServer:
    """One PostgreSQL cluster the tests own (trust authentication, loopback only)."""

    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="jdobb-pg-")))
    started: bool = False

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        # initdb and pg_ctl refuse to run as root: run them as the postgres user then.
        command = list(args)
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres")
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> PostgresServer:
        data = self.directory / "data"
        if not data.exists():
            self._run(
                pg_bin("initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
            )
        self._run(
            pg_bin("pg_ctl"), "-D", str(data), "-w", "-l", str(self.directory / "log"),
            "-o", f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )  # fmt: skip
        self.started = True
        deadline = time.monotonic() + 20
        while not answers(self.url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start on port {self.port}")
            time.sleep(0.1)
        return self

    def stop(self, mode: str = "fast") -> None:
        if self.started:
            self._run(
                pg_bin("pg_ctl"), "-D", str(self.directory / "data"), "-m", mode, "-w", "stop"
            )
            self.started = False

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            try:
                self.stop()
            except subprocess.CalledProcessError:
                self.stop("immediate")  # never leave a server running on a deleted directory
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
