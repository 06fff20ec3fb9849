"""The shape of the package, read from its source.

* Imports run one way: no module of the package imports, even lazily inside a function, one
  that imports it back (imports under ``if TYPE_CHECKING:`` are for annotations and are left
  out).
* No module reaches into the private names of another.
* The enqueue options are declared once, by ``JobQueue.enqueue``; what ``_jobspec`` needs of
  them is generated from that signature.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import pytest

import jdobb_async_queue

ROOT = Path(jdobb_async_queue.__file__).parent
PACKAGE = "jdobb_async_queue"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base]) if base else ".".join(anchor)
                if base.startswith(PACKAGE):
                    found.add(base)
                    for alias in child.names:  # `from . import x` may name a module
                        if (
                            (ROOT.parent / (base + "." + alias.name).replace(".", "/"))
                            .with_suffix(".py")
                            .exists()
                        ):
                            found.add(f"{base}.{alias.name}")
            elif isinstance(child, ast.Import):
                found.update(a.name for a in child.names if a.name.startswith(PACKAGE))
            visit(child)

    visit(ast.parse(path.read_text()))
    found.discard(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for target in _imports(path):
            while target not in modules and "." in target:
                target = target.rpartition(".")[0]
            # importing a package runs its __init__; importing from a child of ours is fine
            if target in modules and target != name and not name.startswith(target + "."):
                targets.add(target)
        graph[name] = targets
    return graph


def test_the_package_has_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def walk(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            walk(node)
    assert not cycles, "\n".join(" -> ".join(c) for c in cycles)


# -- no private reach-ins across modules -----------------------------------------------------------
#
# A name with one leading underscore belongs to the module that defines it. A module may use its
# own private attributes on any object (``other._signature`` of another Task, in _tasks.py), but
# not those another module of the package defines: what crosses a module boundary is public
# (no underscore), even when the module itself is private. Checked by name, from the source: an
# attribute a module defines itself is taken to be its own (a name defined on both sides of a
# boundary would slip through).

#: Cross-module reach-ins still there, with why; each must still occur (or leave this list).
PENDING: dict[tuple[str, str], str] = {}

#: Private attributes of other libraries' objects (defined nowhere in this package), with why.
FOREIGN: dict[tuple[str, str], str] = {
    ("jdobb_async_queue.backends.redis.resp.connection", "_transport"): (
        "drop_stream closes the socket of a stream whose asyncio loop has gone: anyio's stream "
        "holds asyncio's transport, which owns the socket, and neither has a public way"
    ),
    ("jdobb_async_queue.testing.contract", "_pytestfixturefunction"): (
        "telling pytest fixtures apart from tests when the suite is star-imported"
    ),
    ("jdobb_async_queue.tracing", "_TRACER_PROVIDER"): (
        "whether a global tracer provider is set, read before each span: get_tracer_provider() "
        "also looks OTEL_PYTHON_TRACER_PROVIDER up in os.environ, ten times as long; the module "
        "falls back to it if the name goes"
    ),
}

#: Public despite the underscore (it only avoids clashing with field names): namedtuple's API.
PUBLIC_BY_CONVENTION = frozenset({"_replace", "_asdict", "_fields", "_make", "_field_defaults"})

_ACCESSORS = {"getattr", "setattr", "hasattr", "delattr"}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__") and name not in PUBLIC_BY_CONVENTION


def _own_names(tree: ast.AST) -> set[str]:
    """Every name a module defines: functions, classes, variables, attributes it assigns (on
    ``self`` or any object), ``__slots__`` entries."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(
                e.value
                for e in ast.walk(node.value)
                if isinstance(e, ast.Constant) and isinstance(e.value, str)
            )
    return names


def _private_uses(tree: ast.AST) -> list[tuple[int, str, bool]]:
    """(line, name, imported) for each private attribute read or written on something other
    than ``self``/``cls`` (directly or with getattr and the like), and each private name
    imported from a module of the package."""
    uses: list[tuple[int, str, bool]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _is_private(node.attr):
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")):
                uses.append((node.lineno, node.attr, False))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _ACCESSORS
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
            and _is_private(node.args[1].value)
        ):
            uses.append((node.lineno, node.args[1].value, False))
        elif isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").startswith(PACKAGE)
        ):
            uses.extend((node.lineno, a.name, True) for a in node.names if _is_private(a.name))
    return uses


Found = dict[tuple[str, str], list[str]]


def _reach_ins() -> tuple[Found, Found]:
    """(reach-ins into another module of the package, into another library), each keyed by
    (module, name) with the places."""
    paths = {_module_name(p): p for p in ROOT.rglob("*.py")}
    trees = {name: ast.parse(path.read_text()) for name, path in paths.items()}
    own = {name: _own_names(tree) for name, tree in trees.items()}
    defined_somewhere = set().union(*own.values())
    # Importing a private *module* of the package is fine (`from . import _policy`).
    module_names = {name.rpartition(".")[2] for name in paths}
    across: Found = {}
    foreign: Found = {}
    for name, tree in trees.items():
        for line, attr, imported in _private_uses(tree):
            if (imported and attr in module_names) or (not imported and attr in own[name]):
                continue
            where = f"{paths[name].relative_to(ROOT.parent)}:{line}"
            found = across if attr in defined_somewhere else foreign
            found.setdefault((name, attr), []).append(where)
    return across, foreign


def test_no_module_reaches_into_another_modules_private_names() -> None:
    across, foreign = _reach_ins()
    new = {k: v for k, v in across.items() if k not in PENDING}
    assert not new, "\n".join(
        f"{', '.join(v)}: {k[1]} is private to another module of the package"
        for k, v in new.items()
    )
    gone = [k for k in PENDING if k not in across]
    assert not gone, f"no longer reached into (remove them from PENDING): {gone}"
    unknown = {k: v for k, v in foreign.items() if k not in FOREIGN}
    assert not unknown, "\n".join(
        f"{', '.join(v)}: {k[1]}, another library's private name (say why in FOREIGN)"
        for k, v in unknown.items()
    )
    assert not [k for k in FOREIGN if k not in foreign], "stale FOREIGN entries"


def test_the_reach_in_check_sees_them() -> None:
    """The check itself: an attribute private to one module, used from another, is found,
    directly, through getattr, or imported."""
    tree = ast.parse(
        "from ._queue import _TaskDecorator\n"
        "def f(task):\n"
        "    return task._runner, getattr(task, '_signature'), self._mine, p._replace()\n"
    )
    assert _private_uses(tree) == [
        (1, "_TaskDecorator", True),
        (3, "_runner", False),
        (3, "_signature", False),
    ]
    assert "_runner" not in _own_names(tree)
    defines = ast.parse(
        "class T:\n    __slots__ = ('_a',)\n    def __init__(self):\n        self._runner = 1\n"
    )
    assert {"_a", "_runner"} <= _own_names(defines)


# -- the enqueue options are declared once ---------------------------------------------------------

JOBSPEC = ROOT / "_jobspec.py"
_BLOCK = re.compile(
    r"(?P<start># -- generated from JobQueue\.enqueue: do not edit -+\n)(?P<body>.*?)"
    r"(?P<end># -- end of generated code -+\n)",
    re.S,
)


def _enqueue_parameters(queue_source: str) -> list[tuple[str, str, str]]:
    """(name, annotation, default) of each keyword-only parameter of ``JobQueue.enqueue``, as
    written in ``_queue.py``."""
    tree = ast.parse(queue_source)
    (queue,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "JobQueue"]
    (enqueue,) = [
        n for n in queue.body if isinstance(n, ast.AsyncFunctionDef) and n.name == "enqueue"
    ]
    found = []
    for arg, default in zip(enqueue.args.kwonlyargs, enqueue.args.kw_defaults, strict=True):
        assert arg.annotation is not None and default is not None, arg.arg
        found.append((arg.arg, ast.unparse(arg.annotation), ast.unparse(default)))
    return found


def _redeclared(source: str) -> set[str]:
    """The options ``EnqueueOptions`` declares itself (with a wider type than ``enqueue``'s)."""
    tree = ast.parse(source)
    (options,) = [
        n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "EnqueueOptions"
    ]
    return {
        n.target.id
        for n in options.body
        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
    }


def _generated_block(queue_source: str, jobspec_source: str) -> str:
    parameters = _enqueue_parameters(queue_source)
    wider = _redeclared(jobspec_source)
    fields = "".join(
        f"    {name}: {annotation}\n" for name, annotation, _ in parameters if name not in wider
    )
    defaults = "".join(f'    "{name}": {default},\n' for name, _, default in parameters)
    return (
        "class _EnqueueParameters(TypedDict, total=False):\n"
        f"{fields}\n\n"
        "#: The defaults of ``JobQueue.enqueue``'s keyword-only parameters.\n"
        "_ENQUEUE_DEFAULTS: dict[str, Any] = {\n"
        f"{defaults}"
        "}\n"
    )


def _check_generated(jobspec: Path, queue_source: str) -> None:
    source = jobspec.read_text()
    match = _BLOCK.search(source)
    assert match is not None, f"the generated block's markers are gone from {jobspec.name}"
    expected = _generated_block(queue_source, source)
    if match["body"] == expected:
        return
    if os.environ.get("JDOBB_REGENERATE") == "1":
        jobspec.write_text(source[: match.start("body")] + expected + source[match.end("body") :])
        raise AssertionError(f"{jobspec} regenerated from JobQueue.enqueue: review the diff")
    raise AssertionError(
        "JobQueue.enqueue and the block generated from it in _jobspec.py differ: run "
        "JDOBB_REGENERATE=1 pytest tests/test_layers.py, or paste:\n" + expected
    )


def test_the_enqueue_options_are_generated_from_the_signature_of_enqueue() -> None:
    _check_generated(JOBSPEC, (ROOT / "_queue.py").read_text())


def test_a_changed_signature_fails_until_regenerated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue_source = (ROOT / "_queue.py").read_text()
    changed = queue_source.replace("max_retries: int = 0,", "max_retries: int = 3,", 1)
    changed = changed.replace(
        '    ) -> str:\n        """Store a new',
        '        lanes: int = 1,\n    ) -> str:\n        """Store a new',
        1,
    )
    assert changed.count("lanes: int = 1") == 1
    copy = tmp_path / "_jobspec.py"
    copy.write_text(JOBSPEC.read_text())
    monkeypatch.delenv("JDOBB_REGENERATE", raising=False)
    with pytest.raises(AssertionError, match="differ"):
        _check_generated(copy, changed)
    monkeypatch.setenv("JDOBB_REGENERATE", "1")
    with pytest.raises(AssertionError, match="regenerated"):
        _check_generated(copy, changed)
    _check_generated(copy, changed)  # now in step
    text = copy.read_text()
    assert '"max_retries": 3,' in text and "    lanes: int\n" in text and '"lanes": 1,' in text


def test_every_spelling_of_the_enqueue_options_agrees_at_run_time() -> None:
    import inspect
    import typing

    from jdobb_async_queue import JobQueue, Task, Worker
    from jdobb_async_queue._jobspec import ENQUEUE_DEFAULTS, ENQUEUE_OPTIONS, EnqueueOptions
    from jdobb_async_queue.sync import JobQueue as SyncJobQueue

    declared = {
        p.name: p
        for p in inspect.signature(JobQueue.enqueue).parameters.values()
        if p.kind is p.KEYWORD_ONLY
    }
    assert ENQUEUE_OPTIONS == declared.keys() == EnqueueOptions.__optional_keys__
    assert dict(ENQUEUE_DEFAULTS) == {name: p.default for name, p in declared.items()}
    hints = typing.get_type_hints(EnqueueOptions)
    enqueue_hints = typing.get_type_hints(JobQueue.enqueue)
    for name in declared:
        if name != "unique_key":  # wider for tasks and schedules: a function of the arguments
            assert hints[name] == enqueue_hints[name], name
    assert inspect.signature(SyncJobQueue.enqueue) == inspect.signature(JobQueue.enqueue)
    # Task.with_options, Worker.every and Worker.cron take them as **EnqueueOptions.
    for method in (Task.with_options, Worker.every, Worker.cron):
        assert "EnqueueOptions" in str(inspect.signature(method).parameters["options"]), method
