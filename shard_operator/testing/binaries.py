"""Finding and building the binaries of the test environment.

Search order for kube-apiserver, etcd and kube-controller-manager:

1. the folder named by ``KUBEBUILDER_ASSETS`` (controller-runtime's envtest binaries work, but
   envtest ships no kube-controller-manager: the next places are searched for it);
2. the folder named by ``SHARD_OPERATOR_CONTROLPLANE_BIN``;
3. ``tools/controlplane/bin`` of a source checkout (what ``make controlplane`` builds);
4. the user cache, ``$XDG_CACHE_HOME/shard-operator/controlplane/bin`` (``~/.cache/...``), where
   ``shard-operator testenv build`` puts them;
5. ``PATH``.

The Go module that builds them ships inside the package (``controlplane_src/``), so a user who
installed shard-operator with pip builds them with ``shard-operator testenv build`` (needs Go).

redis-server is looked up in ``SHARD_OPERATOR_REDIS_SERVER`` (a path), then on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from shard_operator.errors import BinaryNotFoundError, TestEnvError

__all__ = ["build_controlplane", "controlplane_binary", "controlplane_source", "redis_server_binary",
           "source_checkout_bin_dir", "user_cache_bin_dir"]

BUILD_HINT = "build them with `shard-operator testenv build` (needs Go >= 1.24) or set KUBEBUILDER_ASSETS"


def controlplane_source() -> Path:
    """The Go module (go.mod, go.sum, cmd/, build.sh) that builds the control plane."""
    return Path(__file__).resolve().parent / "controlplane_src"


def source_checkout_bin_dir() -> Path | None:
    """``tools/controlplane/bin`` when this package runs from a source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "shard_operator").is_dir():
        return root / "tools" / "controlplane" / "bin"
    return None


def user_cache_bin_dir() -> Path:
    """Where ``shard-operator testenv build`` puts the binaries by default."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shard-operator" / "controlplane" / "bin"


def _search_dirs() -> list[tuple[str, Path]]:
    dirs = [(f"${variable}", Path(os.environ[variable]))
            for variable in ("KUBEBUILDER_ASSETS", "SHARD_OPERATOR_CONTROLPLANE_BIN") if os.environ.get(variable)]
    checkout = source_checkout_bin_dir()
    if checkout is not None:
        dirs.append((str(checkout), checkout))
    dirs.append((str(user_cache_bin_dir()), user_cache_bin_dir()))
    return dirs


def controlplane_binary(name: str) -> Path:
    """Path of the control-plane binary ``name``; raises :class:`BinaryNotFoundError` naming where it looked."""
    searched = _search_dirs()
    for _, folder in searched:
        path = folder / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found:
        return Path(found)
    places = ", ".join(label for label, _ in searched)
    raise BinaryNotFoundError(f"{name} not found (looked in {places} and PATH); {BUILD_HINT}")


def build_controlplane(dest: Path) -> None:
    """Build the three binaries into ``dest`` with the shipped ``build.sh``; its progress goes to our stdout.

    Raises :class:`TestEnvError` if Go or bash is missing or the build fails.
    """
    if shutil.which("go") is None:
        raise TestEnvError("Go is not installed: `shard-operator testenv build` needs Go >= 1.24 "
                           "(https://go.dev/dl/), or set KUBEBUILDER_ASSETS to prebuilt binaries")
    bash = shutil.which("bash")
    if bash is None:
        raise TestEnvError("bash is not installed; `shard-operator testenv build` runs a bash script")
    script = controlplane_source() / "build.sh"
    result = subprocess.run([bash, str(script), "--dest", str(dest)], check=False)
    if result.returncode != 0:
        raise TestEnvError(f"building the control plane failed (exit {result.returncode}); see the output above")


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
    raise BinaryNotFoundError("redis-server not found on PATH; install it with your package manager "
                              "(e.g. `apt-get install redis-server` or `brew install redis`)")
