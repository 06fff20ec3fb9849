"""A Worker built at import time: ``jdobb-queue worker attr_worker:worker``."""

from __future__ import annotations

from jobs import make_worker

worker = make_worker()
