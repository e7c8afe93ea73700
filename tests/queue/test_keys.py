"""Every queue and ring key of a controller shares one hash tag, so its scripts run on Redis Cluster."""

from __future__ import annotations

import pytest

from shard_operator.keys import Keys


def test_every_key_of_a_controller_carries_its_hash_tag():
    keys = Keys.for_controller("widgets")
    names = [keys.dirty, keys.processing, keys.deadlines, keys.ready("s0"), keys.pending, keys.notify("s0"),
             keys.delayed, keys.failures, keys.bucket, keys.seq, keys.members, keys.ring, keys.epoch]
    assert len(set(names)) == len(names)
    assert all(name.startswith("so:{widgets}:") for name in names)
    assert keys.ready("s0") == keys.ready_prefix + "s0"


@pytest.mark.parametrize("prefix", ["so:widgets", "so:{}", "{a}{b}"])
def test_a_prefix_without_exactly_one_hash_tag_is_refused(prefix):
    with pytest.raises(ValueError):
        Keys(prefix)


@pytest.mark.parametrize("shard", ["", "a|b", "{s}", "s 0"])
def test_a_shard_id_that_cannot_name_a_key_is_refused(shard):
    with pytest.raises(ValueError):
        Keys.for_controller("widgets").ready(shard)
