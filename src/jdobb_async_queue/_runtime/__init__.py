"""The actors of a running Worker, one module each.

``supervisor`` owns the lifecycle and leases, ``claimer`` claims as many jobs as there are idle
handlers, ``handler`` runs one job at a time. They talk through anyio memory object streams;
the one structure they share is the :class:`~._runtime.roster.Roster` of running jobs (see its
docs for why).
"""
