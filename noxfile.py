"""Developer sessions: ``nox -s tests-asyncio tests-trio lint types``."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "types"]


@nox.session
@nox.parametrize("loop", ["asyncio", "trio"])
def tests(session: nox.Session, loop: str) -> None:
    """The whole suite on one event loop (every backend; a redis-server must be on PATH)."""
    session.install("-e", ".[test]")
    session.run("pytest", "-k", loop, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff, including the ASYNC rules and the ban on asyncio/trio imports in src/."""
    session.install("ruff")
    session.run("ruff", "check", "src", "tests")
    session.run("ruff", "format", "--check", "src")


@nox.session
def types(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".[dev]")
    session.run("mypy", "src")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the site; examples are included from examples/ by pymdownx.snippets."""
    session.install("-e", ".[docs]")
    session.run("mkdocs", "build")
