"""The CLI's one error boundary: every expected failure is one line on stderr and an exit code.

Exit codes::

    0   done (for ``status --follow``: the job ended COMPLETE)
    1   the command could not do it: unknown job id, a job in the wrong state, a backend that
        cannot be reached; ``status --follow``: the job ended FAILED or CANCELLED
    2   usage error: bad option or argument, malformed JSON or time, a URL no backend takes,
        an invalid job (``ConfigurationError``, ``InvalidJobError`` and ``SerializationError``)
    130 / 143   ``worker`` stopped at once by a second SIGINT / SIGTERM (128 + the signal)

Anything else is a bug, and keeps its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from .._errors import ConfigurationError, InvalidJobError, JobQueueError

if sys.version_info < (3, 11):
    from exceptiongroup import BaseExceptionGroup

if not hasattr(typer, "TyperException"):
    # Before 0.26 typer raised click's own exceptions, which do not derive from it.
    raise ImportError(f"typer>=0.26 is needed, not {typer.__version__}", name="typer")

__all__ = ["CommandError", "run_app"]

#: Exit status of a usage error (the value click and argparse use).
USAGE = 2


class CommandError(Exception):
    """A command could not do what it was asked (exit status 1).

    :param message: the whole line to print, without the ``error:`` prefix
    """

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


_Expected = (typer.TyperException, JobQueueError, CommandError)


def run_app(app: typer.Typer, args: Sequence[str] | None = None) -> int:
    """Run ``app`` on ``args`` (default: ``sys.argv[1:]``) and return its exit status.

    Usage errors, library errors and :class:`CommandError` are printed as one line on stderr.
    """
    try:
        code = app(args=args, standalone_mode=False)
    except typer.Abort:
        return _fail("aborted", 1)
    except BaseExceptionGroup as group:  # errors from inside task groups (a worker's crew)
        leaves = _leaves(group)
        if not all(isinstance(leaf, _Expected) for leaf in leaves):
            raise
        return _report(leaves[0])
    except _Expected as exc:
        return _report(exc)
    return code if isinstance(code, int) else 0


def _report(exc: BaseException) -> int:
    if isinstance(exc, typer.TyperException):
        return _fail(_usage_line(exc), exc.exit_code)
    if isinstance(exc, (ConfigurationError, InvalidJobError)):
        return _fail(str(exc), USAGE)
    if isinstance(exc, CommandError):
        return _fail(exc.message, 1)
    return _fail(str(exc), 1)


def _usage_line(exc: typer.TyperException) -> str:
    """The message, and which ``--help`` to read when click knows the command."""
    ctx = getattr(exc, "ctx", None)
    if exc.exit_code != USAGE or ctx is None:
        return exc.format_message()
    return f"{exc.format_message()} (see '{ctx.command_path} --help')"


def _fail(message: str, code: int) -> int:
    # One line, whatever the message holds: scripts read stderr line by line.
    line = " ".join(message.split())
    sys.stderr.write(f"error: {line}\n")
    sys.stderr.flush()
    return code


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found
