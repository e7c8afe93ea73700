"""Owned objects map to their owner end to end: a ConfigMap owned by a Widget that is deleted or edited
wakes the Widget's reconcile (through ``Owns``), which puts it back."""

from __future__ import annotations

import pytest

from examples.widgets import CONFIGMAPS, WIDGETS, widget
from shard_operator.client import Client
from shard_operator.errors import NotFoundError

pytestmark = [pytest.mark.controlplane, pytest.mark.redis, pytest.mark.slow]


def configmap_data(kube: Client, namespace: str, name: str) -> dict | None:
    try:
        return kube.get(CONFIGMAPS, name, namespace).get("data")
    except NotFoundError:
        return None


def test_a_deleted_or_edited_owned_configmap_wakes_its_owner_and_is_restored(
        kube: Client, namespace, start_manager) -> None:
    manager = start_manager("pod-0", app="examples.widgets:owning")
    manager.wait_ready()
    owner = kube.create(WIDGETS, widget("owner", namespace, size=7))
    manager.wait_for(lambda: configmap_data(kube, namespace, "owner-data") == {"size": "7"}, 30,
                     "the owned ConfigMap to be created")
    configmap = kube.get(CONFIGMAPS, "owner-data", namespace)
    (reference,) = configmap["metadata"]["ownerReferences"]
    assert (reference["kind"], reference["uid"], reference["controller"]) == ("Widget", owner["metadata"]["uid"], True)

    kube.patch(CONFIGMAPS, configmap, {"data": {"size": "edited"}})  # only the ConfigMap changes
    manager.wait_for(lambda: configmap_data(kube, namespace, "owner-data") == {"size": "7"}, 30,
                     "the edited ConfigMap to be restored by its owner's reconcile")

    kube.delete(CONFIGMAPS, kube.get(CONFIGMAPS, "owner-data", namespace))
    manager.wait_for(lambda: configmap_data(kube, namespace, "owner-data") == {"size": "7"}, 30,
                     "the deleted ConfigMap to be re-created")
    assert manager.metric("controller_runtime_reconcile_errors_total", controller="widgets-owning") == 0
