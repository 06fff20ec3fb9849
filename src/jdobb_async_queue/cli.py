"""The ``jdobb-queue`` command line (``python -m jdobb_async_queue`` too).

Needs the ``cli`` extra (typer and rich): ``pip install 'jdobb-async-queue[cli]'``. The commands
live in the private package ``_cli``; see ``docs/cli.md`` for every command and its output.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

_EXTRA_MODULES = ("typer", "rich")


def main(args: Sequence[str] | None = None) -> None:
    """Run the command line on ``args`` (default: ``sys.argv[1:]``) and exit with its status.

    :raises SystemExit: always, with the command's exit status (see ``docs/cli.md``)
    """
    try:
        from ._cli.app import app
        from ._cli.boundary import run_app
    except ImportError as exc:
        if exc.name not in _EXTRA_MODULES:
            raise
        sys.stderr.write(
            f"error: the command line needs the 'cli' extra ({exc}): "
            "pip install -U 'jdobb-async-queue[cli]'\n"
        )
        raise SystemExit(1) from None
    raise SystemExit(run_app(app, args))
