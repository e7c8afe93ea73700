"""Label selectors evaluated on cached objects behave like the API server's."""

from __future__ import annotations

import pytest

from shard_operator.cache import LabelSelector
from shard_operator.errors import ConfigError

LABELS = {"app": "web", "tier": "front", "app.kubernetes.io/name": "shop"}


@pytest.mark.parametrize(("selector", "expected"), [
    ("", True),
    ("app=web", True),
    ("app==web", True),
    ("app=db", False),
    ("app!=db", True),
    ("missing!=x", True),
    ("tier in (front, back)", True),
    ("tier in (back)", False),
    ("tier notin (back,middle)", True),
    ("tier notin (front)", False),
    ("missing notin (front)", True),
    ("app", True),
    ("missing", False),
    ("!missing", True),
    ("!app", False),
    ("app=web,tier in (front),!missing", True),
    ("app=web,tier in (back)", False),
    ("app.kubernetes.io/name=shop", True),
])
def test_a_selector_matches_labels_like_the_api_server(selector, expected):
    assert LabelSelector.parse(selector).matches(LABELS) is expected


def test_a_mapping_selector_requires_every_label_to_be_equal():
    assert LabelSelector.parse({"app": "web", "tier": "front"}).matches(LABELS)
    assert not LabelSelector.parse({"app": "web", "tier": "back"}).matches(LABELS)


def test_a_label_selector_spec_with_match_expressions_is_understood():
    spec = {"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]},
                                 {"key": "gone", "operator": "DoesNotExist"}]}
    assert LabelSelector.from_spec(spec).matches(LABELS)
    assert not LabelSelector.from_spec({"matchExpressions": [{"key": "app", "operator": "NotIn",
                                                              "values": ["web"]}]}).matches(LABELS)


@pytest.mark.parametrize("selector", ["app=", "=web", "tier in front", "a in ()", "app=web,,", "a b"])
def test_a_malformed_selector_is_refused(selector):
    if selector == "app=":  # an empty value is valid: it matches a label set to ""
        assert LabelSelector.parse(selector).matches({"app": ""})
        return
    with pytest.raises(ConfigError):
        LabelSelector.parse(selector)
