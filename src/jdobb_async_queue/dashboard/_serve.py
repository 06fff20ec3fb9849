"""Serve the dashboard with hypercorn, on whichever event loop (asyncio or trio) is running."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

import anyio
import anyio.lowlevel

from .._errors import MissingDependencyError
from .._queue import JobQueue
from ._app import DEFAULT_TITLE, create_app

if TYPE_CHECKING:
    from hypercorn.typing import Framework

__all__ = ["running_on_trio", "serve"]


def running_on_trio() -> bool:
    """Whether the running event loop is trio's (else asyncio's)."""
    current_token = getattr(anyio.lowlevel, "current_token", None)  # anyio >= 4.11
    if current_token is not None:
        return str(current_token().backend_class.__module__).endswith("._trio")
    trio = sys.modules.get("trio")
    if trio is None:
        return False
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


async def serve(
    queue: JobQueue,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    token: str | None = None,
    read_only: bool = False,
    title: str = DEFAULT_TITLE,
    bind: list[str] | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    access_log: bool = False,
    **app_options: Any,
) -> None:
    """Serve :func:`create_app(queue, ...) <create_app>` over HTTP until cancelled (or until
    ``shutdown_trigger`` returns), with hypercorn's asyncio or trio server as the running loop
    needs. It installs no signal handlers: the caller decides when to stop.

    :param host: the address to listen on (``0.0.0.0`` for every interface)
    :param port: the TCP port
    :param bind: hypercorn binds instead of ``host``/``port`` (``["unix:/run/q.sock"]``,
        ``["fd://3"]``, several addresses)
    :param shutdown_trigger: when it returns, the server stops gracefully
    :param access_log: log each request to stderr
    :param app_options: more :func:`create_app` keywords (``refresh``, ``sample_interval``)
    :raises MissingDependencyError: when hypercorn is not installed
    """
    try:
        from hypercorn.config import Config
    except ImportError:
        raise MissingDependencyError(
            "the dashboard", "dashboard", "hypercorn", feature=True
        ) from None
    app = cast(
        "Framework", create_app(queue, token=token, read_only=read_only, title=title, **app_options)
    )
    config = Config()
    config.bind = list(bind) if bind else [_address(host, port)]
    config.accesslog = "-" if access_log else None
    config.errorlog = "-"
    config.graceful_timeout = 2.0
    stop = shutdown_trigger or anyio.sleep_forever
    if running_on_trio():
        from hypercorn.trio import serve as trio_serve

        await trio_serve(app, config, shutdown_trigger=stop)
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        await asyncio_serve(app, config, shutdown_trigger=stop)


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
