"""A Griffe extension for the API reference: the blocking ``jdobb_async_queue.sync.JobQueue``
derives its methods at import time (``enqueue = _blocking(lambda queue: queue.enqueue)``), so
static analysis sees assignments. This puts the members Griffe finds by *inspecting* the class
(their real signatures and docstrings) in their place."""

from __future__ import annotations

from typing import Any

import griffe

TARGET = "jdobb_async_queue.sync.JobQueue"


class InspectDerivedMembers(griffe.Extension):
    """Replace the derived members of the blocking queue by their inspected twins."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if cls.path != TARGET:
            return
        inspected = griffe.inspect("jdobb_async_queue.sync", docstring_parser=griffe.Parser.sphinx)
        live = inspected.members["JobQueue"]
        for name, member in list(cls.members.items()):
            if not member.is_attribute or name.startswith("_"):
                continue
            twin = live.members.get(name)
            if twin is not None and (twin.is_function or twin.is_attribute):
                twin.parent = cls
                cls.set_member(name, twin)
