"""Redis URLs: :func:`parse_redis_url` turns one into a :class:`RedisAddress`."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

from .errors import InvalidRedisURL

__all__ = ["RedisAddress", "parse_redis_url"]


@dataclass(frozen=True)
class RedisAddress:
    """Where and how to connect: the parsed form of a Redis URL.

    Exactly one of ``host`` and ``path`` is set.
    """

    host: str | None = None
    port: int = 6379
    path: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix://{self.path}?db={self.db}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{'rediss' if self.tls else 'redis'}://{host}:{self.port}/{self.db}"


def _masked(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    userinfo, at, hostpart = rest.partition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostpart}"


def parse_redis_url(url: str) -> RedisAddress:
    """Parse ``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs.

    Accepted forms: ``redis://[[user]:password@]host[:port][/db]``, the same with ``rediss://``,
    and ``unix://[[user]:password@]/path/to/socket[?db=N]``. The query may carry ``db``,
    ``username`` and ``password``; user name and password are percent-decoded.

    :param url: the URL
    :raises InvalidRedisURL: for another scheme, a missing host or socket path, a bad port or
        database number, a user name without a password, or an unknown query parameter
    :return: the address
    """
    if not isinstance(url, str):
        raise InvalidRedisURL(repr(url), "a Redis URL must be a str")
    shown = _masked(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidRedisURL(shown, str(exc)) from None
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise InvalidRedisURL(shown, "the scheme must be redis://, rediss:// or unix://")
    query = _parse_query(shown, parts.query)
    username = _pick(parts.username, query.get("username"))
    password = _pick(parts.password, query.get("password"))
    if username is not None and password is None:
        raise InvalidRedisURL(shown, "a user name needs a password (user:password@)")
    if parts.fragment:
        raise InvalidRedisURL(shown, "a Redis URL has no #fragment")
    if parts.scheme == "unix":
        if parts.hostname or port is not None or not parts.path.startswith("/"):
            raise InvalidRedisURL(shown, "a unix URL needs an absolute path: unix:///path/to/sock")
        db = _parse_db(shown, query.get("db", "0"))
        return RedisAddress(path=parts.path, db=db, username=username, password=password)
    if not parts.hostname:
        raise InvalidRedisURL(shown, "the URL has no host")
    path_db = parts.path.strip("/")
    if path_db and "db" in query:
        raise InvalidRedisURL(shown, "give the database in the path or in ?db=, not both")
    db = _parse_db(shown, path_db or query.get("db", "0"))
    return RedisAddress(
        host=parts.hostname,
        port=6379 if port is None else port,
        db=db,
        username=username,
        password=password,
        tls=parts.scheme == "rediss",
    )


def _pick(from_netloc: str | None, from_query: str | None) -> str | None:
    if from_netloc:  # "" (as in redis://:password@host) means "not given"
        return unquote(from_netloc)
    return from_query


def _parse_query(shown: str, query: str) -> dict[str, str]:
    try:
        values = parse_qs(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as exc:
        raise InvalidRedisURL(shown, f"bad query string: {exc}") from None
    unknown = sorted(set(values) - {"db", "username", "password"})
    if unknown:
        raise InvalidRedisURL(shown, f"unknown query parameter(s): {', '.join(unknown)}")
    if any(len(v) > 1 for v in values.values()):
        raise InvalidRedisURL(shown, "a query parameter is given twice")
    return {key: v[0] for key, v in values.items()}


def _parse_db(shown: str, text: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise InvalidRedisURL(shown, f"the database must be a number >= 0, not {text!r}")
    return int(text)
