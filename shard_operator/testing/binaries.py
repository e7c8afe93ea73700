"""Finding and building the binaries of the test environment.

Two Kubernetes minors are supported (:data:`SUPPORTED_VERSIONS`): 1.34, the default, and 1.37, whose
API server serves sharded LIST and WATCH (alpha in 1.36+). The version is chosen by argument, else
by ``SHARD_OPERATOR_KUBERNETES_VERSION`` (:func:`kubernetes_version`).

Search order for kube-apiserver, etcd and kube-controller-manager of the default version:

1. the folder named by ``KUBEBUILDER_ASSETS`` (controller-runtime's envtest binaries work, but
   envtest ships no kube-controller-manager: the next places are searched for it);
2. the folder named by ``SHARD_OPERATOR_CONTROLPLANE_BIN``;
3. ``tools/controlplane/bin`` of a source checkout (what ``make controlplane`` builds);
4. the user cache, ``$XDG_CACHE_HOME/shard-operator/controlplane/bin`` (``~/.cache/...``), where
   ``shard-operator testenv build`` puts them;
5. ``PATH``.

Of another version (1.37): ``SHARD_OPERATOR_CONTROLPLANE_BIN_1_37``, ``tools/controlplane-1.37/bin``
of a source checkout (``make controlplane``), then ``$XDG_CACHE_HOME/shard-operator/controlplane-1.37/bin``
(``shard-operator testenv --kubernetes-version 1.37 build``); never ``PATH`` or ``KUBEBUILDER_ASSETS``,
which hold binaries of unknown version.

The Go module that builds them ships inside the package (``controlplane_src/``), so a user who
installed shard-operator with pip builds them with ``shard-operator testenv build`` (needs Go).

redis-server is looked up in ``SHARD_OPERATOR_REDIS_SERVER`` (a path), then on ``PATH``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from shard_operator.errors import BinaryNotFoundError, ConfigError, TestEnvError

__all__ = ["DEFAULT_VERSION", "SUPPORTED_VERSIONS", "VERSION_VARIABLE", "build_controlplane",
           "controlplane_binary", "controlplane_source", "kubernetes_version", "redis_server_binary",
           "source_checkout_bin_dir", "user_cache_bin_dir"]

DEFAULT_VERSION = "1.34"
SUPPORTED_VERSIONS = ("1.34", "1.37")
"""The Kubernetes minors the Go module pins (go.mod, go.1.37.mod) and the test environment starts."""
VERSION_VARIABLE = "SHARD_OPERATOR_KUBERNETES_VERSION"

BUILD_HINT = "build them with `shard-operator testenv build` (needs Go >= 1.24) or set KUBEBUILDER_ASSETS"


def kubernetes_version(requested: str | None = None) -> str:
    """The Kubernetes minor to run: ``requested``, else ``$SHARD_OPERATOR_KUBERNETES_VERSION``, else
    :data:`DEFAULT_VERSION`. ``1.37``, ``v1.37`` and ``1.37.2`` all name 1.37; raises
    :class:`ConfigError` for a version that is not supported."""
    raw = requested or os.environ.get(VERSION_VARIABLE) or DEFAULT_VERSION
    parts = raw.strip().removeprefix("v").split(".")
    minor = ".".join(parts[:2])
    if minor not in SUPPORTED_VERSIONS or not all(part.isdigit() for part in parts):
        source = "" if requested else f" (from ${VERSION_VARIABLE})"
        raise ConfigError(f"unsupported Kubernetes version {raw!r}{source}; supported: "
                          f"{', '.join(SUPPORTED_VERSIONS)}")
    return minor


def _suffix(version: str | None) -> str:
    """The folder suffix of ``version``'s binaries: none for the default version, ``-1.37`` otherwise."""
    version = version or DEFAULT_VERSION
    return "" if version == DEFAULT_VERSION else f"-{version}"


def controlplane_source() -> Path:
    """The Go module (go.mod, go.sum, cmd/, build.sh) that builds the control plane."""
    return Path(__file__).resolve().parent / "controlplane_src"


def source_checkout_bin_dir(version: str | None = None) -> Path | None:
    """``tools/controlplane/bin`` (``tools/controlplane-1.37/bin`` for 1.37) when this package runs from a
    source checkout, else None."""
    root = Path(__file__).resolve().parents[2]
    if (root / "pyproject.toml").is_file() and (root / "shard_operator").is_dir():
        return root / "tools" / f"controlplane{_suffix(version)}" / "bin"
    return None


def user_cache_bin_dir(version: str | None = None) -> Path:
    """Where ``shard-operator testenv build`` puts the binaries of ``version`` (default: 1.34) by default."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "shard-operator" / f"controlplane{_suffix(version)}" / "bin"


def _search_dirs(version: str | None) -> list[tuple[str, Path]]:
    suffix = _suffix(version)
    variables = (("KUBEBUILDER_ASSETS", "SHARD_OPERATOR_CONTROLPLANE_BIN") if not suffix
                 else ("SHARD_OPERATOR_CONTROLPLANE_BIN" + suffix.replace("-", "_").replace(".", "_"),))
    dirs = [(f"${variable}", Path(os.environ[variable])) for variable in variables if os.environ.get(variable)]
    checkout = source_checkout_bin_dir(version)
    if checkout is not None:
        dirs.append((str(checkout), checkout))
    dirs.append((str(user_cache_bin_dir(version)), user_cache_bin_dir(version)))
    return dirs


def controlplane_binary(name: str, version: str | None = None) -> Path:
    """Path of the control-plane binary ``name`` of Kubernetes ``version`` (default: 1.34); raises
    :class:`BinaryNotFoundError` naming where it looked."""
    searched = _search_dirs(version)
    for _, folder in searched:
        path = folder / name
        if path.is_file() and os.access(path, os.X_OK):
            return path
    default = not _suffix(version)
    found = shutil.which(name) if default else None
    if found:
        return Path(found)
    places = ", ".join(label for label, _ in searched) + (" and PATH" if default else "")
    hint = BUILD_HINT if default else (f"build them with `shard-operator testenv --kubernetes-version {version} "
                                       "build` (needs Go >= 1.24)")
    raise BinaryNotFoundError(f"{name} {version or DEFAULT_VERSION} not found (looked in {places}); {hint}")


def build_controlplane(dest: Path, version: str | None = None) -> None:
    """Build the three binaries of Kubernetes ``version`` (default: 1.34) into ``dest`` with the shipped
    ``build.sh``; its progress goes to our stdout. Skipped when ``dest`` holds the same build already.

    Raises :class:`TestEnvError` if Go or bash is missing or the build fails.
    """
    if shutil.which("go") is None:
        raise TestEnvError("Go is not installed: `shard-operator testenv build` needs Go >= 1.24 "
                           "(https://go.dev/dl/), or set KUBEBUILDER_ASSETS to prebuilt binaries")
    bash = shutil.which("bash")
    if bash is None:
        raise TestEnvError("bash is not installed; `shard-operator testenv build` runs a bash script")
    script = controlplane_source() / "build.sh"
    result = subprocess.run([bash, str(script), "--kubernetes-version", kubernetes_version(version),
                             "--dest", str(dest)], check=False)
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
