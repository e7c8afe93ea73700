"""Label selectors evaluated on cached objects, so a reconciler's list never reaches the API server.

Parses Kubernetes' selector syntax (``a=b``, ``a==b``, ``a!=b``, ``a in (x,y)``, ``a notin (x)``,
``a``, ``!a``, comma-separated and all required) and ``metav1.LabelSelector`` dicts
(``matchLabels``/``matchExpressions``). Used by :class:`shard_operator.cache.CacheReader`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shard_operator.errors import ConfigError

__all__ = ["LabelSelector", "Requirement"]

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_NOT_EXISTS = re.compile(rf"^!\s*({_KEY})$")
_SET = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_EQUALITY = re.compile(rf"^({_KEY})\s*(==|=|!=)\s*({_VALUE})$")
_EXISTS = re.compile(rf"^({_KEY})$")
_TERMS = re.compile(r"(?:[^,(]|\([^)]*\))+")


@dataclass(frozen=True)
class Requirement:
    """One condition on a label: ``operator`` is In, NotIn, Exists or DoesNotExist."""

    key: str
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        return labels.get(self.key) not in self.values  # NotIn, which a missing label satisfies


@dataclass(frozen=True)
class LabelSelector:
    """All ``requirements`` must hold; the empty selector matches every object."""

    requirements: tuple[Requirement, ...] = ()

    @classmethod
    def parse(cls, selector: str | Mapping[str, str] | LabelSelector | None) -> LabelSelector:
        """From selector text, a mapping of labels that must be equal, or an existing selector."""
        if selector is None:
            return cls()
        if isinstance(selector, LabelSelector):
            return selector
        if isinstance(selector, Mapping):
            return cls(tuple(Requirement(k, "In", frozenset([v])) for k, v in selector.items()))
        text = selector.strip()
        if not text:
            return cls()
        terms = _TERMS.findall(text)
        if ",".join(terms) != text:
            raise ConfigError(f"invalid label selector {selector!r}")
        return cls(tuple(_parse_term(term.strip(), selector) for term in terms))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> LabelSelector:
        """From a ``metav1.LabelSelector`` (``matchLabels`` and ``matchExpressions``)."""
        requirements = [Requirement(k, "In", frozenset([v])) for k, v in (spec.get("matchLabels") or {}).items()]
        for expression in spec.get("matchExpressions") or []:
            operator = expression.get("operator")
            if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
                raise ConfigError(f"invalid label selector operator {operator!r}")
            requirements.append(Requirement(expression["key"], operator,
                                            frozenset(expression.get("values") or [])))
        return cls(tuple(requirements))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    def matches_object(self, obj: Mapping[str, Any]) -> bool:
        return self.matches((obj.get("metadata") or {}).get("labels"))


def _parse_term(term: str, selector: str) -> Requirement:
    if match := _NOT_EXISTS.match(term):
        return Requirement(match[1], "DoesNotExist")
    if match := _SET.match(term):
        values = frozenset(v.strip() for v in match[3].split(",") if v.strip())
        if not values or not all(re.fullmatch(_VALUE, v) for v in values):
            raise ConfigError(f"invalid values in label selector {selector!r}")
        return Requirement(match[1], "In" if match[2] == "in" else "NotIn", values)
    if match := _EQUALITY.match(term):
        return Requirement(match[1], "NotIn" if match[2] == "!=" else "In", frozenset([match[3]]))
    if match := _EXISTS.match(term):
        return Requirement(match[1], "Exists")
    raise ConfigError(f"invalid label selector {selector!r}: cannot parse {term!r}")
