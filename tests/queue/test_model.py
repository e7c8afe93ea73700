"""The Redis queue behaves like a small in-memory model of client-go's queue, step for step."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)

from shard_operator.errors import ClaimLostError
from shard_operator.keys import Keys
from shard_operator.queue import Item, ManualClock, WorkQueue
from tests.queue.backends import Connect, publish_ring

TTL = 30.0
KEYS = [f"ns/k{i}" for i in range(5)]
_prefixes = itertools.count()


class Model:
    """client-go's queue in a few lines: a dirty set, claims with deadlines and a FIFO queue."""

    def __init__(self) -> None:
        self.dirty: set[str] = set()
        self.processing: dict[str, str] = {}  # key -> claim token
        self.deadlines: dict[str, float] = {}
        self.queue: list[str] = []

    def add(self, key: str) -> bool:
        if key in self.dirty:
            return False
        self.dirty.add(key)
        if key not in self.processing:
            self.queue.append(key)
        return True

    def get(self) -> str | None:
        if not self.queue:
            return None
        key = self.queue.pop(0)
        self.dirty.discard(key)
        return key

    def claim(self, key: str, token: str, deadline: float) -> None:
        self.processing[key], self.deadlines[key] = token, deadline

    def release(self, key: str) -> None:
        del self.processing[key], self.deadlines[key]
        if key in self.dirty:
            self.queue.append(key)

    def expire_all(self) -> int:
        expired = sorted(self.processing, key=lambda key: (self.deadlines[key], key))
        self.processing.clear()
        self.deadlines.clear()
        for key in expired:
            self.dirty.add(key)
            self.queue.append(key)
        return len(expired)


def machine_for(connect: Connect) -> type[RuleBasedStateMachine]:
    class QueueMachine(RuleBasedStateMachine):
        held = Bundle("held")

        def __init__(self) -> None:
            super().__init__()
            self.clock = ManualClock()
            client = connect()
            keys = Keys(f"model{next(_prefixes)}:{{widgets}}")
            publish_ring(client, keys, self.clock, "s0")
            self.queue = WorkQueue(client, keys, clock=self.clock, claim_ttl=TTL)
            self.model = Model()
            self.lost: set[str] = set()

        @rule(key=st.sampled_from(KEYS))
        def add(self, key: str) -> None:
            assert self.queue.add(key) == self.model.add(key)

        @rule(target=held, owner=st.sampled_from(["w1", "w2"]))
        def get(self, owner: str) -> object:
            self.clock.step(1.0)
            item = self.queue.get("s0", owner)
            expected = self.model.get()
            assert (item.key if item else None) == expected
            if item is None:
                return multiple()
            self.model.claim(item.key, item.token, self.clock() + TTL)
            return multiple(item)

        @rule(item=consumes(held))
        def done(self, item: Item) -> None:
            if item.token in self.lost:
                with pytest.raises(ClaimLostError):
                    self.queue.done(item)
                return
            self.queue.done(item)
            self.model.release(item.key)

        @rule(item=held)
        def renew(self, item: Item) -> None:
            self.clock.step(0.5)
            if item.token in self.lost:
                with pytest.raises(ClaimLostError):
                    self.queue.renew(item)
                return
            self.queue.renew(item)
            self.model.deadlines[item.key] = self.clock() + TTL

        @rule()
        def expire_every_claim(self) -> None:
            self.lost.update(self.model.processing.values())
            self.clock.step(TTL + 1.0)
            assert self.queue.reap_expired() == self.model.expire_all()

        @invariant()
        def lengths_match(self) -> None:
            assert self.queue.len() == len(self.model.queue)
            assert self.queue.num_processing() == len(self.model.processing)

    return QueueMachine


def test_the_redis_queue_matches_the_reference_model(connect):
    run_state_machine_as_test(machine_for(connect),
                              settings=settings(max_examples=40, stateful_step_count=30, deadline=None))
