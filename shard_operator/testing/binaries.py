"""Finding the binaries of the test environment.

Search order for kube-apiserver, etcd and kube-controller-manager:

1. the folder named by ``KUBEBUILDER_ASSETS`` (controller-runtime's envtest binaries work);
2. the folder named by ``SHARD_OPERATOR_CONTROLPLANE_BIN``;
3. ``tools/controlplane/bin`` of a source checkout (what ``make controlplane`` builds);
4. ``PATH``.

redis-server is looked up in ``SHARD_OPERATOR_REDIS_SERVER`` (a path), then on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from shard_operator.errors import BinaryNotFoundError

__all__ = ["controlplane_binary", "redis_server_binary", "source_checkout_bin_dir"]


def source_checkout_bin_dir() -> Path:
    """Where ``make controlplane`` puts the binaries in a source checkout of this project."""
    return Path(__file__).resolve().parents[2] / "tools" / "controlplane" / "bin"


def controlplane_binary(name: str) -> Path:
    """Path of the control-plane binary ``name``; raises :class:`BinaryNotFoundError` naming where it looked."""
    candidates: list[Path] = []
    for variable in ("KUBEBUILDER_ASSETS", "SHARD_OPERATOR_CONTROLPLANE_BIN"):
        folder = os.environ.get(variable)
        if folder:
            candidates.append(Path(folder) / name)
    candidates.append(source_checkout_bin_dir() / name)
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return Path(found)
    raise BinaryNotFoundError(
        f"{name} not found (looked in $KUBEBUILDER_ASSETS, $SHARD_OPERATOR_CONTROLPLANE_BIN, "
        f"{source_checkout_bin_dir()} and PATH); build it with `make controlplane`"
    )


def redis_server_binary() -> Path:
    """Path of redis-server; raises :class:`BinaryNotFoundError` with the install hint."""
    explicit = os.environ.get("SHARD_OPERATOR_REDIS_SERVER")
    if explicit:
        if Path(explicit).is_file():
            return Path(explicit)
        raise BinaryNotFoundError(f"SHARD_OPERATOR_REDIS_SERVER={explicit} does not exist")
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    raise BinaryNotFoundError("redis-server not found on PATH; install it with `apt-get install redis-server`")
