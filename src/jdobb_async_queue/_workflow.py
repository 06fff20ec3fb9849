"""Workflow: a graph of jobs, stored in one atomic backend call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._errors import InvalidJobError
from ._jobspec import ENQUEUE_OPTIONS, new_job_id

if TYPE_CHECKING:
    from ._queue import JobQueue

__all__ = ["Workflow", "WorkflowStep"]


@dataclass(frozen=True, eq=False)
class WorkflowStep:
    """One job of a :class:`Workflow`; its ``job_id`` is known before submission."""

    workflow: Workflow
    job_id: str
    job_type: str
    data: dict[str, Any] | None
    depends_on: tuple[WorkflowStep, ...]
    options: dict[str, Any] = field(default_factory=dict)


class Workflow:
    """Jobs and the order between them, submitted all at once.

    ::

        wf = Workflow("nightly")
        fetch = wf.add("fetch", {"url": url})
        parse = wf.add("parse", depends_on=[fetch])
        ids = await wf.submit(queue)

    :param name: stored as ``metadata["workflow"]`` of every job
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise InvalidJobError(f"a workflow needs a non-empty name, not {name!r}")
        self.name = name
        self._steps: list[WorkflowStep] = []
        self._ids: set[str] = set()  # the steps' job ids, for the duplicate check
        self._submitted = False

    @property
    def steps(self) -> list[WorkflowStep]:
        """The steps in the order they were added."""
        return list(self._steps)

    def add(
        self,
        job_type: str,
        data: dict[str, Any] | None = None,
        *,
        depends_on: Sequence[WorkflowStep] = (),
        **options: Any,
    ) -> WorkflowStep:
        """Add a step; ``options`` are ``enqueue``'s keyword arguments.

        :raises InvalidJobError: for a dependency on a step of another workflow, or an
            ``enqueue`` option that does not exist
        """
        unknown = set(options) - (ENQUEUE_OPTIONS - {"depends_on"})
        if unknown:
            raise InvalidJobError(f"unknown enqueue option(s): {', '.join(sorted(unknown))}")
        for dep in depends_on:
            if not isinstance(dep, WorkflowStep) or dep.workflow is not self:
                raise InvalidJobError(
                    f"step {job_type!r} of workflow {self.name!r} may only depend on steps "
                    f"added to this workflow before it, not {dep!r}"
                )
        job_id = options.pop("job_id", None) or new_job_id()
        if job_id in self._ids:
            raise InvalidJobError(f"workflow {self.name!r} already has a step with id {job_id!r}")
        step = WorkflowStep(self, job_id, job_type, data, tuple(depends_on), options)
        self._steps.append(step)
        self._ids.add(job_id)
        return step

    async def submit(self, queue: JobQueue) -> list[str]:
        """Store every step in one atomic call; return the job ids in the order added.

        :raises InvalidJobError: if the workflow was already submitted or is empty
        """
        if self._submitted:
            raise InvalidJobError(f"workflow {self.name!r} was already submitted")
        items = [self._item(step) for step in self._steps]
        ids = await queue.enqueue_many(items)
        self._submitted = True
        return ids

    def _item(self, step: WorkflowStep) -> dict[str, Any]:
        metadata = {**(step.options.get("metadata") or {}), "workflow": self.name}
        return {
            **step.options,
            "job_type": step.job_type,
            "data": step.data,
            "job_id": step.job_id,
            "metadata": metadata,
            "depends_on": [d.job_id for d in step.depends_on],
        }
