"""The web dashboard (extra ``dashboard``): a Starlette application over a :class:`JobQueue`.

::

    from jdobb_async_queue.dashboard import create_app, serve

    app.mount("/queue", create_app(queue, token="s3cret"))   # in your FastAPI/Starlette app
    await serve(queue, "127.0.0.1", 8080, read_only=True)      # or on its own (hypercorn)

Pages: ``/`` (overview), ``/jobs`` (filter by status and type, paging), ``/jobs/{id}`` (live
status and progress by server-sent events), ``/workers``; JSON under ``/api/``.
"""

from __future__ import annotations

try:
    import starlette  # noqa: F401
except ImportError:  # pragma: no cover - depends on what is installed
    from .._errors import MissingDependencyError

    raise MissingDependencyError("the dashboard", "dashboard", "starlette", feature=True) from None

from ._app import COOKIE, DEFAULT_TITLE, create_app
from ._serve import serve

__all__ = ["COOKIE", "DEFAULT_TITLE", "create_app", "serve"]
