"""The actors of a running Worker, one module each.

``supervisor`` owns the lifecycle and leases, ``claimer`` claims as many jobs as there are idle
handlers and hands them over through the :class:`~._runtime.dispatch.Dispatch`, ``handler``
runs one job at a time, ``reporter`` stores outcomes. Otherwise they talk through anyio memory
object streams; the structures they share are the dispatch and the
:class:`~._runtime.roster.Roster` of running jobs (see the docs of each for why).
"""
