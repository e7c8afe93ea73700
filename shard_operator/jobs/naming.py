"""Every name the jobs layer puts in Redis: job ids, the per-object job index, worker liveness keys.

(The lead may move these templates into :mod:`shard_operator.keys`; they are kept here so the jobs
package stays self-contained.) rq keeps its own ``rq:*`` keys; ours are::

    <controller prefix>:jobs:<object key>   HASH  job name -> {"id", "generation"} of the current job
    so:jobs:alive:<worker name>             STRING set with a short TTL while that job worker lives
    so:jobs:sweep:<rq queue>                STRING lock held by the one process sweeping that queue
"""

from __future__ import annotations

import hashlib
import re

from shard_operator.keys import DEFAULT_NAMESPACE, Keys

__all__ = ["DEFAULT_QUEUE", "alive_key", "controller_queue", "index_key", "job_id", "sweep_lock_key"]

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


def index_key(controller: str, key: str) -> str:
    return f"{Keys.for_controller(controller).prefix}:jobs:{key}"


def alive_key(worker_name: str) -> str:
    return f"{DEFAULT_NAMESPACE}:jobs:alive:{worker_name}"


def sweep_lock_key(queue: str) -> str:
    return f"{DEFAULT_NAMESPACE}:jobs:sweep:{queue}"
