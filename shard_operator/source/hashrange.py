"""Ranges of the 64-bit uid hash that server-side sharded LIST and WATCH select on.

Kubernetes 1.36 added, behind the alpha feature gate ``ShardedListAndWatch`` (KEP-5866), a
``shardSelector`` list option: ``shardRange(object.metadata.uid, '0x<16 hex>', '0x<16 hex>')`` keeps
the objects whose FNV-1a 64-bit hash of ``metadata.uid`` lies in ``[start, end)``; the end of the
whole space is written ``'0x10000000000000000'`` (2**64). A list answered under a shard selector
echoes it in ``metadata.shardInfo.selector``; a server without the feature ignores the parameter and
answers the whole collection without ``shardInfo``. A uid never changes, so an object stays in one
range for its whole life.

:class:`HashRange` is one such range: it writes the selector and decides membership in Python with
the same hash (:func:`uid_hash`), so a client can check the server's answer or filter for itself.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

__all__ = ["FULL_RANGE", "HASH_SPACE", "HashRange", "uid_hash"]

HASH_SPACE = 1 << 64
"""The size of the hash space: ranges lie within ``[0, HASH_SPACE)``."""

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = HASH_SPACE - 1


def uid_hash(uid: str) -> int:
    """The FNV-1a 64-bit hash of ``uid``'s UTF-8 bytes, as the API server computes it for ``shardRange``."""
    value = _FNV_OFFSET
    for byte in uid.encode():
        value = ((value ^ byte) * _FNV_PRIME) & _MASK
    return value


@dataclass(frozen=True, order=True)
class HashRange:
    """The uid hashes ``start <= h < end``, with ``0 <= start < end <= 2**64``."""

    start: int
    end: int

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= HASH_SPACE:
            raise ValueError(f"a hash range needs 0 <= start < end <= 2**64, got [{self.start:#x}, {self.end:#x})")

    @classmethod
    def split(cls, parts: int) -> list[HashRange]:
        """``parts`` adjacent ranges of (nearly) equal size that together cover the whole space."""
        if parts < 1:
            raise ValueError(f"cannot split the hash space into {parts} parts")
        bounds = [HASH_SPACE * i // parts for i in range(parts + 1)]
        return [cls(low, high) for low, high in itertools.pairwise(bounds)]

    @property
    def selector(self) -> str:
        """The ``shardSelector`` of this range, in the normalized form the API server echoes back."""
        return f"shardRange(object.metadata.uid, '{_hex(self.start)}', '{_hex(self.end)}')"

    def contains_uid(self, uid: str) -> bool:
        """Whether an object with ``uid`` lies in this range."""
        return self.start <= uid_hash(uid) < self.end

    def contains(self, obj: dict[str, Any]) -> bool:
        """Whether ``obj`` (an API object with ``metadata.uid``) lies in this range."""
        return self.contains_uid(str((obj.get("metadata") or {}).get("uid", "")))

    def intersection(self, other: HashRange) -> HashRange | None:
        """The hashes in both ranges, or None when they do not overlap."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return HashRange(start, end) if start < end else None

    def __str__(self) -> str:
        return f"[{_hex(self.start)}, {_hex(self.end)})"


FULL_RANGE = HashRange(0, HASH_SPACE)
"""The whole hash space: every object."""


def _hex(value: int) -> str:
    # 16 digits, lowercase, as the server requires; 2**64 alone has 17 ("0x10000000000000000").
    return f"0x{value:016x}"
