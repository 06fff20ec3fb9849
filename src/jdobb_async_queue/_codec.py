"""JSON encoding of what backends store and send: msgspec, never pickle.

:func:`dump_json` is also the JSON-compatibility check: a value is accepted only if it survives a
round trip unchanged, which rejects tuples, non-str keys, NaN, datetimes, bytes and custom
objects, in C, at the cost of one encode and one decode.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from ._errors import PayloadTooLargeError, SerializationError

__all__ = [
    "CheckedJSON",
    "checked_copy",
    "checked_copy_within",
    "dump_json", "is_json_scalar", "load_json"]


class CheckedJSON(dict):  # type: ignore[type-arg]
    """A dict the library built from values already known to be JSON (skips the round trip)."""


def is_json_scalar(value: object) -> bool:
    """Whether ``value`` is None, a bool, an int, an ASCII str or a finite float: JSON as it is.

    Any other str is left to the round trip: it may hold a lone surrogate, which UTF-8 refuses.
    """
    if type(value) is str:
        return value.isascii()
    if type(value) is float:
        return math.isfinite(value)
    return value is None or type(value) is int or type(value) is bool


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder()


def dump_json(value: Any, what: str) -> bytes:
    """Encode ``value`` as JSON, refusing anything that would not decode back equal.

    :param value: the value to encode
    :param what: the argument's name, for the error message
    :raises SerializationError: if ``value`` is not JSON-compatible
    :return: the JSON bytes
    """
    return _round_trip(value, what)[0]


def checked_copy(value: Any, what: str) -> Any:
    """Return a deep copy of ``value`` made through JSON, after :func:`dump_json`'s check."""
    return _round_trip(value, what)[1]


def checked_copy_within(value: Any, what: str, limit: int | None) -> Any:
    """:func:`checked_copy`, refusing a value whose JSON is over ``limit`` bytes (None: any).

    :raises PayloadTooLargeError: when it is
    """
    raw, copy = _round_trip(value, what)
    if limit is not None and len(raw) > limit:
        raise PayloadTooLargeError(what, len(raw), limit)
    return copy


def _round_trip(value: Any, what: str) -> tuple[bytes, Any]:
    """The JSON of ``value`` and its decoded copy, once it is known to be equal to ``value``."""
    try:
        raw = _encoder.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise SerializationError(what, str(exc)) from None
    copy = _decoder.decode(raw)
    if copy != value:
        raise SerializationError(what, f"{_describe(value)} does not survive a JSON round trip")
    return raw, copy


def load_json(raw: bytes | str) -> Any:
    """Decode JSON stored by :func:`dump_json`."""
    return _decoder.decode(raw)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
