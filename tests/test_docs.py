"""Every example on every documentation page (and the README) runs, and the site renders right.

What "runs" means depends on the block:

* a block that includes a file with ``--8<-- "examples/x.py"`` runs that file as a program
  (``tests/test_examples.py`` also checks what the main ones print);
* every other ``python`` block runs as written in a scratch directory, with top-level ``await``,
  on the memory backend, after a short prelude that gives it what the page around it has set up
  (``queue``, ``worker``, a job id...: see :data:`PRELUDE`), and with a time limit; a worker
  that the page runs until it is stopped (``await worker.run()``) runs with ``burst=True``;
* a block that cannot run on this machine as written (it needs a TLS Redis, a package of the
  reader's own, or is the body of a test) is listed in :data:`NOT_RUN` with the reason, and is
  still compiled. A new block is run unless it is added there.

The last tests check the built site when ``mkdocs`` is installed (the ``docs`` extra): every
public name is on the API reference, and no table cell shows an escaped ``\\|``.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [*sorted((ROOT / "docs").glob("**/*.md")), ROOT / "README.md"]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```", re.S | re.M)
SNIPPET = re.compile(r'^\s*--8<--\s+"(?P<path>[^"]+)"\s*$', re.M)


@dataclass(frozen=True)
class Block:
    page: str  # relative to the repository
    line: int
    code: str

    @property
    def key(self) -> str:
        return f"{self.page}:{self.line}"


def python_blocks() -> list[Block]:
    blocks = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            if match.group("lang") != "python":
                continue
            line = text.count("\n", 0, match.start()) + 1
            code = textwrap.dedent(match.group("body"))
            blocks.append(Block(str(page.relative_to(ROOT)), line, code))
    return blocks


BLOCKS = python_blocks()
INCLUDES = [b for b in BLOCKS if SNIPPET.search(b.code)]
FRAGMENTS = [b for b in BLOCKS if not SNIPPET.search(b.code)]

#: Blocks that are compiled but not run, keyed by their first line's text (stable when lines
#: above them move), with the reason.
NOT_RUN: dict[str, str] = {
    "import psycopg": (
        "needs the reader's own PostgreSQL database and table; "
        "tests/backends/test_postgres_outbox.py runs the same calls"
    ),
    "import ssl": "needs a Redis server with TLS and the reader's certificates",
    "from jdobb_async_queue.sync import JobQueue": (
        "the blocking API, which may not run inside an event loop; examples/sync_script.py "
        "(included on the same page) runs it"
    ),
    "with JobQueue(\"sqlite:///jobs.db\") as queue:": "the blocking API (see above)",
    "# myapp/jobs.py: plain functions, no queue": "imports the reader's own package myapp",
    "from jdobb_async_queue import Worker": "imports the reader's own package myapp",
    "from jdobb_async_queue import JobQueue, Worker": (
        "waits for a worker that runs elsewhere; examples/tasks.py runs the same calls"
    ),
    "@queue.task": "shows the type errors mypy reports, on purpose",
    "# tests/test_my_backend.py: the whole contract suite on MyBackend": (
        "a test module for the reader's own backend; tests/test_example_backend.py runs the "
        "same on examples/dict_backend.py"
    ),
}

#: What the page around a fragment has set up, run before it. Handlers for the job types the
#: pages use are registered so that a fragment that drains the worker finds them.
PRELUDE = """
import anyio, pytest
from datetime import datetime, timedelta, timezone
from jdobb_async_queue import *
from jdobb_async_queue.testing import MockClock

paths = ["a.png", "b.png"]

queue = JobQueue(backend="memory")
worker = Worker(queue, poll_interval=0.01)
for _type in ("resize", "report", "extract", "transform", "load", "sync-account", "heartbeat",
              "email", "cleanup", "send", "nightly", "digest", "backup", "invoices"):
    async def _handler(ctx):
        return {"ok": True}
    worker.register_handler(_type, _handler)
job_id = await queue.enqueue("resize", {"path": "cat.png"})
await queue.complete((await queue.claim()).id, {"thumbnail": "cat.small.png"})

@queue.task
async def send_digest() -> None:
    pass
"""

#: A worker that a page runs "until worker.stop()" runs here until nothing is left to claim.
FOREVER = re.compile(r"await worker\.run\(\)")


def _first_line(block: Block) -> str:
    return next(line for line in block.code.splitlines() if line.strip())


@pytest.mark.parametrize("block", INCLUDES, ids=lambda b: b.key)
def test_included_example_runs(block: Block, tmp_path: Path) -> None:
    for match in SNIPPET.finditer(block.code):
        path = ROOT / match.group("path")
        assert path.is_file(), f"{block.key} includes {path}, which does not exist"
        if path.suffix != ".py":
            continue
        result = subprocess.run(
            [sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True,
            timeout=60, check=False,
        )
        assert result.returncode == 0, (block.key, result.stdout, result.stderr)


@pytest.mark.parametrize("block", FRAGMENTS, ids=lambda b: b.key)
def test_fragment_runs(block: Block, tmp_path: Path) -> None:
    compile(block.code, block.key, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    reason = NOT_RUN.get(_first_line(block))
    if reason is not None:
        pytest.skip(f"compiled, not run: {reason}")
    code = FOREVER.sub("await worker.run(burst=True)", block.code)
    program = RUNNER.format(prelude=PRELUDE, code=code, name=block.key)
    result = subprocess.run(
        [sys.executable, "-c", program], cwd=tmp_path, capture_output=True, text=True,
        timeout=30, check=False, env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )
    assert result.returncode == 0, f"{block.key}:\n{block.code}\n{result.stderr}"


#: Runs the prelude and the fragment as one coroutine with a time limit, then closes the queue.
RUNNER = '''
import ast, inspect, anyio

PRELUDE = {prelude!r}
CODE = {code!r}

async def main():
    namespace = {{"__name__": "__docs__"}}
    with anyio.fail_after(10):
        for source, name in ((PRELUDE, "prelude"), (CODE, {name!r})):
            code = compile(source, name, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
            result = eval(code, namespace)
            if result is not None:
                await result
        # A test the page defines runs too, with fresh job_queue / job_worker fixtures, as the
        # package's pytest plugin makes them.
        JobQueue, Worker = namespace["JobQueue"], namespace["Worker"]
        for name, test in list(namespace.items()):
            if name.startswith("test_") and inspect.iscoroutinefunction(test):
                async with JobQueue(backend="memory") as job_queue:
                    fixtures = {{"job_queue": job_queue,
                                "job_worker": Worker(job_queue, poll_interval=0.01)}}
                    await test(*[fixtures[p] for p in inspect.signature(test).parameters])
    queue = namespace.get("queue")
    if queue is not None and hasattr(queue, "close"):
        closed = queue.close()
        if closed is not None:
            await closed

anyio.run(main)
'''


def test_not_run_lists_only_blocks_that_exist() -> None:
    firsts = {_first_line(b) for b in FRAGMENTS}
    assert set(NOT_RUN) <= firsts, set(NOT_RUN) - firsts


# -- the built site ----------------------------------------------------------------------------

REFERENCE = {
    "jdobb_async_queue": "reference/jdobb_async_queue",
    "jdobb_async_queue.sync": "reference/sync",
    "jdobb_async_queue.testing": "reference/testing",
    "jdobb_async_queue.pytest_plugin": "reference/testing",
    "jdobb_async_queue.backends": "reference/backends",
    "jdobb_async_queue.backends.base": "reference/backends.base",
    "jdobb_async_queue.metrics": "reference/operations",
    "jdobb_async_queue.tracing": "reference/operations",
    "jdobb_async_queue.health": "reference/operations",
    "jdobb_async_queue.dashboard": "reference/operations",
}

needs_mkdocs = pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("mkdocstrings") is None,
    reason="the docs extra is not installed: pip install -e '.[docs]'",
)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr
    return out


@needs_mkdocs
@pytest.mark.parametrize("module", sorted(REFERENCE))
def test_every_public_name_is_on_the_reference(site: Path, module: str) -> None:
    html = (site / REFERENCE[module] / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="([^"]+)"', html))
    names = importlib.import_module(module).__all__
    missing = [name for name in names if f"{module}.{name}" not in anchors]
    assert not missing, f"not on {REFERENCE[module]}.md: {missing}"


@needs_mkdocs
def test_no_page_shows_an_escaped_pipe(site: Path) -> None:
    shown = [
        str(page.relative_to(site))
        for page in site.glob("**/*.html")
        if "\\|" in re.sub(r"<script.*?</script>", "", page.read_text(encoding="utf-8"), flags=re.S)
    ]
    assert not shown


@needs_mkdocs
def test_site_has_the_real_repository_copy_buttons_and_dark_mode(site: Path) -> None:
    html = (site / "index.html").read_text(encoding="utf-8")
    assert "https://github.com/jdobb/jdobb-async-queue" in html
    assert "example.invalid" not in html
    assert "content.code.copy" in html
    assert 'data-md-color-scheme="slate"' in html


def test_readme_and_docs_stand_on_their_own() -> None:
    """Nothing a user reads points outside the repository or at a "reference" they do not have."""
    texts = {p: p.read_text(encoding="utf-8") for p in PAGES}
    for path in (ROOT / "src").glob("**/*.py"):
        texts[path] = path.read_text(encoding="utf-8")
    offenders = [
        f"{path.relative_to(ROOT)}: {match.group(0)!r}"
        for path, text in texts.items()
        for match in re.finditer(r"\.\./shared/|the reference.s|what the reference says", text, re.I)
    ]
    assert not offenders
