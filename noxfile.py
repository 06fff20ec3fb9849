"""Developer and CI sessions.

``nox -s tests`` runs the whole suite on every supported Python (3.10 to 3.13) and both event
loops; ``nox -s "tests-3.12(loop='trio')"`` one cell of it; ``nox -s contract`` the contract
suite and the examples, which is what CI runs on the Pythons other than 3.11 (see ``.ci/run``).
Interpreters are found on PATH or under pyenv (``~/.pyenv/versions/3.1x.y``).
"""

from __future__ import annotations

import glob
import os

import nox

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
LOOPS = ["asyncio", "trio"]

nox.options.sessions = ["tests", "lint", "types", "docs"]
nox.options.reuse_existing_virtualenvs = True


def _add_pyenv_to_path() -> None:
    """Let nox find pyenv's interpreters (``python3.1x``) when they are not on PATH."""
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", "3.1[0-9].*", "bin")))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_to_path()


@nox.session(python=PYTHONS)
@nox.parametrize("loop", LOOPS)
def tests(session: nox.Session, loop: str) -> None:
    """The whole suite on one event loop (every backend; a redis-server must be on PATH)."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "-k", loop, *session.posargs)


@nox.session(python=PYTHONS)
@nox.parametrize("loop", LOOPS)
def contract(session: nox.Session, loop: str) -> None:
    """The contract suite (every backend) and the examples, on one event loop."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", "tests/contract", "-k", loop, *session.posargs)
    session.run("python", "-m", "pytest", "tests/test_examples.py", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, including the ASYNC rules and the ban on asyncio/trio imports in src/."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests")
    session.run("ruff", "format", "--check", "src")


@nox.session(python="3.11")
def types(session: nox.Session) -> None:
    """mypy --strict on src/ (the config checks it as Python 3.10)."""
    session.install("-e", ".[dev]")
    session.run("mypy", "src")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the site with warnings as errors, API reference included (mkdocstrings)."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build", "--strict")
