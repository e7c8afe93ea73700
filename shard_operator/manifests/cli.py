"""``shard-operator manifests``: the command that writes the kustomize base for an operator.

Where it sits: :mod:`shard_operator.cli` adds this subcommand with :func:`add_manifests_parser` and runs
it with :func:`cmd_manifests`; ``--check`` makes it a test (exit 1 when the folder differs from a fresh
generation), which CI runs on ``deploy/base``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from shard_operator.manifests.monitoring import render_monitoring
from shard_operator.manifests.rendering import HEADER, render, write
from shard_operator.manifests.workload import WorkloadOptions

__all__ = ["add_manifests_parser", "cmd_manifests", "stale_files"]

_DEFAULTS = WorkloadOptions()


def add_manifests_parser(commands: Any) -> None:
    manifests = commands.add_parser("manifests", help="write the CRDs, RBAC and StatefulSet of an operator "
                                    "as a kustomize base")
    manifests.add_argument("--app", required=True, metavar="MODULE:ATTR", help="the operator, as module:attribute")
    manifests.add_argument("--out", type=Path, required=True, help="folder to write (the kustomize base)")
    manifests.add_argument("--name", default=_DEFAULTS.name, help="name of the StatefulSet, ServiceAccount "
                           f"and roles (default {_DEFAULTS.name})")
    manifests.add_argument("--namespace", default=_DEFAULTS.namespace, help="namespace to deploy into "
                           f"(default {_DEFAULTS.namespace})")
    manifests.add_argument("--image", default=_DEFAULTS.image, help=f"operator image (default {_DEFAULTS.image})")
    manifests.add_argument("--replicas", type=int, default=_DEFAULTS.replicas, help="pods")
    manifests.add_argument("--workers", type=int, default=_DEFAULTS.workers, help="worker processes per pod")
    manifests.add_argument("--monitoring-out", type=Path, default=None,
                           help="also write the ServiceMonitor, PrometheusRule and Grafana dashboard here")
    manifests.add_argument("--check", action="store_true",
                           help="write nothing; exit 1 if --out differs from what would be written")


def options_from_args(args: argparse.Namespace) -> WorkloadOptions:
    return WorkloadOptions(name=args.name, namespace=args.namespace, app=args.app, image=args.image,
                           replicas=args.replicas, workers=args.workers)


def stale_files(folder: Path, files: dict[str, str]) -> list[str]:
    """Names of the files in ``files`` that ``folder`` lacks or holds with other content."""
    return [name for name, text in files.items()
            if not (folder / name).is_file() or (folder / name).read_text() != text]


def cmd_manifests(args: argparse.Namespace) -> int:
    from shard_operator.cli import load_operator

    options = options_from_args(args)
    outputs = {args.out: render(load_operator(args.app), options)}
    if args.monitoring_out is not None:
        outputs[args.monitoring_out] = render_monitoring(options, HEADER.format(app=args.app))
    if args.check:
        stale = [str(folder / name) for folder, files in outputs.items() for name in stale_files(folder, files)]
        if stale:
            print(f"shard-operator: out of date: {', '.join(stale)}; regenerate with "
                  "`shard-operator manifests` and the same options without --check", file=sys.stderr)
            return 1
        return 0
    for folder, files in outputs.items():
        for path in write(folder, files):
            print(path)
    return 0
