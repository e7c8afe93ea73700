"""The task registry: the only functions a background job can run.

An RQ job stored in Redis names a task, never a function to import. Job workers run one fixed
trampoline (:func:`shard_operator.jobs.running.run_task`) that looks the name up here, so a job
written to Redis by anyone else cannot make a worker import or call anything unregistered.
Register tasks at import time, before the job worker processes fork::

    @task("build-image")
    def build_image(ref: str) -> dict: ...
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from shard_operator.errors import UnregisteredTaskError

__all__ = ["TaskRegistry", "default_registry", "task"]

F = TypeVar("F", bound=Callable[..., Any])


class TaskRegistry:
    """Task name → function. Names are unique; registering another function under a taken name fails."""

    def __init__(self) -> None:
        self._by_name: dict[str, Callable[..., Any]] = {}
        self._by_func: dict[Callable[..., Any], str] = {}

    def register(self, name: str | None = None) -> Callable[[F], F]:
        """Decorator: register the function under ``name`` (default: ``module.qualname``)."""

        def decorate(func: F) -> F:
            self.add(func, name)
            return func

        return decorate

    def add(self, func: Callable[..., Any], name: str | None = None) -> str:
        """Register ``func``; returns its name."""
        task_name = name or f"{func.__module__}.{func.__qualname__}"
        if not task_name or len(task_name) > 200:
            raise ValueError(f"invalid task name {task_name!r}")
        existing = self._by_name.get(task_name)
        if existing is not None and existing is not func:
            raise ValueError(f"task name {task_name!r} is already registered to {existing!r}")
        self._by_name[task_name] = func
        self._by_func[func] = task_name
        return task_name

    def name_of(self, task: str | Callable[..., Any]) -> str:
        """The registered name of ``task`` (a name or a registered function)."""
        if isinstance(task, str):
            if task not in self._by_name:
                raise UnregisteredTaskError(f"no task is registered as {task!r}")
            return task
        try:
            return self._by_func[task]
        except (KeyError, TypeError):
            raise UnregisteredTaskError(f"{task!r} is not a registered task; register it with @task(...)") from None

    def get(self, name: str) -> Callable[..., Any]:
        try:
            return self._by_name[name]
        except (KeyError, TypeError):
            raise UnregisteredTaskError(f"no task is registered as {name!r}; refusing to run it") from None

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return sorted(self._by_name)


#: The registry used unless a :class:`~shard_operator.jobs.Jobs` or job worker pool is given another.
default_registry = TaskRegistry()


def task(name: str | None = None) -> Callable[[F], F]:
    """Register a function in :data:`default_registry` (``@task("name")``)."""
    return default_registry.register(name)
