"""The Lua scripts of the Redis backend, assembled once per process and called by their SHA1.

Each script is one ``backends/redis/lua/<name>.lua`` file. Before loading, the backend prepends the
definitions it uses from two sources: a header generated here (key and channel names from
:mod:`.keys`, the state machine's allowed source states from
:func:`jdobb_async_queue._states.sources`, from :mod:`jdobb_async_queue._policy` the
dependency and lost-job error texts, the ``max_lost`` default and the rule ending a lost job,
and from :mod:`.codec` the job's layout in its hash, itself derived from ``JobRecord``: what a
claim returns, what a record's JSON and an update are made of, what enqueue takes and stores)
and ``lib.lua``, the helpers the scripts share. So the transition table, the key layout, the
policy and the job's fields each stay in one place: the scripts apply decided outcomes and hold
no retry rule, and no list of a job's fields of their own.

Only the definitions a script uses (transitively) go into it: Redis runs a script's whole chunk
on every call, and creating closures it never calls costs microseconds per call.

On Redis 7+ the same code also makes one *function library* (:func:`library_source`): every
definition is made once, when the library is loaded, and each script is a function of it, so a
call runs just its own body (tens of microseconds less per call than the script, more when the
server's caches are cold). The definitions that depend on the call (marked ``-- per call``, see
``lua/lib.lua``) are declared at the top and assigned again at the start of each call. The
library's name carries a digest of its code, so processes running different versions of this
package each find their own. The backend uses the library where the server and the user allow
(``FCALL`` and ``FUNCTION LOAD``) and the scripts otherwise.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources

from ..._models import JobStatus
from ..._policy import DEFAULT_MAX_LOST, dependency_error, lost_ends_job, lost_error
from ..._records import FIELD_BY_NAME, UPDATE_FIELDS
from ..._states import Event, sources
from ..base import WORKER_TTL
from . import codec
from .keys import lua_header
from .resp import Library, Script

__all__ = ["Scripts", "constants_header", "library_source", "load_scripts"]

_LUA_PACKAGE = "jdobb_async_queue.backends.redis"
_TERMINAL = (JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.CANCELLED)
_DEFINITION = re.compile(r"^local (?:function )?([A-Za-z_][\w, ]*?)\s*(?:=|\()", re.M)
_WORD = re.compile(r"[A-Za-z_]\w*")
_COMMENT = re.compile(r"--[^\n]*")
_PER_CALL = re.compile(r"^local ([A-Za-z_][\w, ]*?)\s*=\s*(.*?)\s*-- per call$")


def _lua_string(text: str) -> str:
    """A Lua string literal for ``text``."""
    escaped = "".join(c if c.isalnum() or c in " _-:.|" else f"\\{ord(c)}" for c in text)
    return f"'{escaped}'"


def _lua_set(values: Iterable[str]) -> str:
    return "{" + ", ".join(f"[{_lua_string(v)}] = true" for v in values) + "}"


def _lua_list(values: Iterable[str]) -> str:
    return "{" + ", ".join(_lua_string(v) for v in values) + "}"


def _lua_text(text: str) -> str:
    """A Lua string literal for ``text`` made of a field's name and JSON punctuation."""
    if "'" in text or "\\" in text or not text.isprintable():
        raise ValueError(f"not a JSON member's start: {text!r}")
    return f"'{text}'"


def _json_layout(fields: Iterable[str], names: Mapping[str, str] | None = None) -> str:
    """:func:`.codec.json_members` as the Lua list ``append_json`` (lib.lua) reads:
    ``{{',"<name>":', quoted}, ...}``."""
    members = codec.json_members(fields, names)
    return "{" + ", ".join(f"{{{_lua_text(k)}, {str(q).lower()}}}" for k, q in members) + "}"


def layout_header() -> list[str]:
    """The job's layout in its hash (:mod:`.codec`) as Lua definitions."""
    record = codec.HASH_FIELDS
    (first, *announced) = UPDATE_FIELDS  # the id, then the fields an update announces
    update_start = '{"' + UPDATE_FIELDS[first] + '":'
    claimed_at = ", ".join(
        f"[{_lua_string(codec.hash_name(n))}] = {i}" for i, n in enumerate(codec.CLAIMED, 1)
    )
    return [
        f"local CLAIMED_FIELDS = {_lua_list(codec.hash_name(n) for n in codec.CLAIMED)}",
        f"local CLAIMED_AT = {{{claimed_at}}}",
        f"local RECORD_HASH = {_lua_list([*map(codec.hash_name, record), 'spec'])}",
        f"local RECORD_JSON = {_json_layout(record)}",
        f"local UPDATE_START = {_lua_text(update_start)}",
        f"local UPDATE_HASH = {_lua_list(codec.hash_name(n) for n in announced)}",
        f"local UPDATE_JSON = {_json_layout(announced, dict(UPDATE_FIELDS))}",
        f"local ENQUEUE_ARGS = {_lua_list(codec.ENQUEUE_ARGS)}",
        _enqueue_record_lua(),
        f"local NEW_JOB = {_lua_list(item for pair in codec.NEW_JOB for item in pair)}",
    ]


def _enqueue_record_lua() -> str:
    """``enqueue_record(at)``: the record ``enqueue.lua`` reads from ARGV at ``at``: its id, its
    spec and :data:`.codec.ENQUEUE_ARGS` (an optional one, ``''`` or ``'='`` and its value, as
    nil or the value), and an empty ``deps``. One table constructor: filled field by field in a
    loop, the table grows and is rehashed, a microsecond more per job."""
    fields = ["id = ARGV[at]", "spec = ARGV[at + 1]"]
    for offset, name in enumerate(codec.ENQUEUE_ARGS, 2):
        arg = f"ARGV[at + {offset}]"
        if name != "rank" and FIELD_BY_NAME[name].optional:
            arg = f"({arg} ~= '' and string.sub({arg}, 2) or nil)"
        fields.append(f"{name} = {arg}")
    return f"local function enqueue_record(at) return {{{', '.join(fields)}, deps = {{}}}} end"


def _dependency_error_lua() -> str:
    """``dependency_error`` as a Lua function, from the Python one's output."""
    head, rest = dependency_error("\x01", "\x02").split("\x01")
    middle, tail = rest.split("\x02")
    parts = [_lua_string(head), "id", _lua_string(middle), "status", _lua_string(tail)]
    return f"local function dependency_error(id, status) return {' .. '.join(parts)} end"


def _lost_error_lua() -> str:
    """``lost_error`` as a Lua function (of the count as text), from the Python one's output."""
    head, tail = lost_error(0x1F1F).split(str(0x1F1F))
    parts = [_lua_string(head), "lost", _lua_string(tail)]
    return f"local function lost_error(lost) return {' .. '.join(parts)} end"


#: ``lost_ends_job`` in Lua; :func:`_lost_rule_lua` checks it against the Python rule.
_LOST_RULE = "local function lost_ends_job(lost, max_lost) return lost > max_lost end"


def _lost_rule_lua() -> str:
    """The Lua form of ``_policy.lost_ends_job``, refused if the Python rule has changed."""
    samples = [(lost, most) for lost in range(8) for most in range(6)]
    if any(lost_ends_job(lost, most) != (lost > most) for lost, most in samples):
        raise RuntimeError("_policy.lost_ends_job changed: update _LOST_RULE in scripts.py")
    return _LOST_RULE


def constants_header() -> str:
    """Lua constants generated from the Python definitions they must agree with."""
    transitions = ", ".join(
        f"[{_lua_string(event.value)}] = {_lua_set(s.value for s in sorted(sources(event)))}"
        for event in Event
    )
    statuses = ", ".join(_lua_string(s.value) for s in JobStatus)
    terminal = ", ".join(_lua_string(s.value) for s in _TERMINAL)
    return "\n".join(
        [
            lua_header(),
            f"local SOURCES = {{{transitions}}}",
            f"local STATUSES = {{{statuses}}}",
            f"local TERMINAL = {{{terminal}}}",
            f"local IS_TERMINAL = {_lua_set(s.value for s in _TERMINAL)}",
            f"local DEFAULT_MAX_LOST = {DEFAULT_MAX_LOST!r}",
            f"local WORKER_TTL = {WORKER_TTL!r}",
            _dependency_error_lua(),
            _lost_error_lua(),
            _lost_rule_lua(),
            *layout_header(),
        ]
    )


@dataclass(frozen=True)
class _Block:
    """One top-level definition: the names it defines and its text (comments included)."""

    names: frozenset[str]
    text: str


def _blocks(source: str) -> list[_Block]:
    """Split Lua source into its top-level ``local`` definitions, each with the comment lines
    just above it (bodies are indented; only definitions and comments start a line)."""
    blocks: list[tuple[frozenset[str], list[str]]] = []
    comments: list[str] = []
    for line in source.splitlines():
        match = _DEFINITION.match(line)
        if match:
            names = frozenset(n.strip() for n in match.group(1).split(","))
            blocks.append((names, [*comments, line]))
            comments = []
        elif line.startswith("--"):
            comments.append(line)
        elif blocks and line.strip():
            blocks[-1][1].append(line)
    return [_Block(names, "\n".join(lines)) for names, lines in blocks]


def _used(text: str, blocks: list[_Block]) -> str:
    """The definitions ``text`` needs, transitively, in their original order."""
    by_name = {name: i for i, b in enumerate(blocks) for name in b.names}
    needed: set[int] = set()
    todo = [text]
    while todo:
        for word in set(_WORD.findall(_COMMENT.sub("", todo.pop()))):
            i = by_name.get(word)
            if i is not None and i not in needed:
                needed.add(i)
                todo.append(blocks[i].text)
    return "\n".join(blocks[i].text for i in sorted(needed))


def _source(name: str) -> str:
    return (resources.files(_LUA_PACKAGE) / "lua" / f"{name}.lua").read_text("utf-8")


@dataclass(frozen=True)
class Scripts:
    """Every script the backend calls, and the library holding them as functions."""

    enqueue: Script
    claim: Script
    finish: Script
    cancel: Script
    retry: Script
    progress: Script
    renew: Script
    reclaim: Script
    get: Script
    list: Script
    stats: Script
    purge: Script
    next_due: Script
    setaside: Script
    workers: Script
    library: Library


def _names() -> list[str]:
    return [name for name in Scripts.__dataclass_fields__ if name != "library"]


def assemble(name: str) -> str:
    """The full source of one script: the definitions it uses, then its own text."""
    blocks = _blocks(constants_header() + "\n" + _source("lib"))
    body = _source(name)
    return _used(body, blocks) + "\n" + body


def library_source() -> tuple[str, dict[str, str]]:
    """The function library of every script: its code, and each script's function name."""
    declared, begin = [], []
    for line in (constants_header() + "\n" + _source("lib")).splitlines():
        per_call = _PER_CALL.match(line)
        if per_call:
            declared.append(f"local {per_call.group(1)}")
            begin.append(f"  {per_call.group(1)} = {per_call.group(2)}")
        else:
            declared.append(line)
    bodies = {name: _source(name) for name in _names()}
    digest = hashlib.sha1(usedforsecurity=False)
    for part in (*declared, *begin, *bodies.values()):
        digest.update(part.encode() + b"\n")
    name = f"jdobb_{digest.hexdigest()[:16]}"
    functions = {script: f"{name}_{script}" for script in bodies}
    parts = [
        f"#!lua name={name}",
        "local KEYS, ARGV",
        *declared,
        "local function begin(keys, args)",
        "  KEYS, ARGV = keys, args",
        *begin,
        "end",
    ]
    for script, body in bodies.items():
        parts += [
            f"redis.register_function('{functions[script]}', function(keys, args)",
            "begin(keys, args)",
            body,
            "end)",
        ]
    return "\n".join(parts) + "\n", functions


@cache
def load_scripts() -> Scripts:
    """Assemble and hash every script, and the library (once per process)."""
    source, functions = library_source()
    library = Library(source.split("\n", 1)[0].removeprefix("#!lua name="), source)
    scripts = {name: Script(assemble(name), function=functions[name]) for name in _names()}
    return Scripts(**scripts, library=library)
