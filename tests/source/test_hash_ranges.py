"""Hash ranges of the uid hash that sharded list and watch select on: the hash and the selector are the
API server's (apimachinery's pkg/sharding), so a range computed here means the same objects there."""

from __future__ import annotations

import itertools

import pytest

from shard_operator.source import HashRange, uid_hash

LOWER, UPPER = HashRange.split(2)


class TestHashRanges:
    def test_the_uid_hash_is_fnv1a_64(self):
        # The published FNV-1a 64-bit test vectors.
        assert uid_hash("") == 0xCBF29CE484222325
        assert uid_hash("a") == 0xAF63DC4C8601EC8C
        assert uid_hash("foobar") == 0x85944171F73967E8

    def test_a_split_covers_the_whole_space_without_overlap(self):
        ranges = HashRange.split(3)
        assert ranges[0].start == 0 and ranges[-1].end == 1 << 64
        assert all(left.end == right.start for left, right in itertools.pairwise(ranges))

    def test_the_selector_uses_16_hex_digits_and_2_to_the_64_as_the_open_end(self):
        assert LOWER.selector == "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')"
        assert UPPER.selector == "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"

    def test_an_empty_or_out_of_space_range_is_refused(self):
        for start, end in ((5, 5), (-1, 3), (0, (1 << 64) + 1)):
            with pytest.raises(ValueError):
                HashRange(start, end)

    def test_membership_is_decided_by_the_uid_hash(self):
        uid = "0b5d5e36-7f1c-4d7e-9a57-2b1f8f0e6c11"
        holder = next(r for r in HashRange.split(4) if r.contains_uid(uid))
        assert holder.start <= uid_hash(uid) < holder.end
        assert holder.contains({"metadata": {"uid": uid}})
        assert sum(r.contains_uid(uid) for r in HashRange.split(4)) == 1

    def test_the_intersection_of_two_ranges_is_what_both_hold(self):
        assert HashRange(0, 10).intersection(HashRange(5, 20)) == HashRange(5, 10)
        assert HashRange(0, 10).intersection(HashRange(10, 20)) is None
