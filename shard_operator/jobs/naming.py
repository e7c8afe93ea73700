"""rq's names for our jobs: deterministic job ids and the rq queue of each controller.

These are identifiers rq turns into its own ``rq:*`` keys, not Redis keys we name; the Redis keys
the jobs layer writes itself (the per-object job index, worker liveness, the sweep lock) are in
:mod:`shard_operator.keys` with every other key.
"""

from __future__ import annotations

import hashlib
import re

__all__ = ["DEFAULT_QUEUE", "controller_queue", "job_id"]

#: The rq queue jobs go to unless ``queue=`` says otherwise.
DEFAULT_QUEUE = "shard-operator"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def controller_queue(controller: str) -> str:
    """The rq queue of one controller's jobs under the manager: its job workers serve no other, so a
    worker never meets a task name another operator registered."""
    return f"{DEFAULT_QUEUE}.{controller}"


def job_id(controller: str, key: str, generation: int | str, name: str) -> str:
    """The deterministic rq job id of (controller, object key, generation, job name).

    rq ids allow only letters, digits, ``_`` and ``-``: a readable prefix plus a hash of the four parts.
    """
    digest = hashlib.sha256("\x1f".join((controller, key, str(generation), name)).encode()).hexdigest()[:32]
    return f"so-{_UNSAFE.sub('_', controller)[:40]}-{digest}"
