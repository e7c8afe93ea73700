"""The ``shard-operator`` command line.

Commands:
  testenv up|down|env|status   the embedded control plane and Redis (for running without a cluster)

Every failure the library expects ends in a one-line message on stderr and a non-zero exit code
(2 for bad configuration or input, 1 for anything else), never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from shard_operator.errors import ConfigError, ShardOperatorError

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shard-operator", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    testenv = commands.add_parser("testenv", help="start, inspect or stop the embedded control plane and Redis")
    testenv.add_argument("--dir", type=Path, default=None,
                         help="state folder (default: $SHARD_OPERATOR_TESTENV_DIR or "
                              "~/.local/state/shard-operator/testenv)")
    actions = testenv.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("up", help="start etcd, kube-apiserver and redis-server in the background")
    actions.add_parser("down", help="stop them and remove the state folder")
    actions.add_parser("status", help="say whether the environment runs")
    env = actions.add_parser("env", help="print KUBECONFIG=… and REDIS_URL=… of the running environment")
    env.add_argument("--export", action="store_true", help="prefix each line with 'export ' for eval")
    return parser


def cmd_testenv(args: argparse.Namespace) -> int:
    from shard_operator.testing import testenv

    folder = args.dir or testenv.default_state_dir()
    if args.action == "up":
        state, started = testenv.testenv_up(folder)
        print("started" if started else "already running", file=sys.stderr)
        print("\n".join(testenv.env_lines(state)))
        return 0
    if args.action == "down":
        stopped = testenv.testenv_down(folder)
        print("stopped" if stopped else "not running", file=sys.stderr)
        return 0
    running = testenv.testenv_status(folder)
    if running is None:
        print(f"the test environment is not running (state folder {folder}); "
              "start it with `shard-operator testenv up`", file=sys.stderr)
        return EXIT_ERROR
    if args.action == "env":
        print("\n".join(testenv.env_lines(running, export=args.export)))
    else:
        print(f"running: API server {running.server_url}, Redis {running.redis_url}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "testenv":
            return cmd_testenv(args)
        raise ConfigError(f"unknown command {args.command!r}")
    except ConfigError as exc:
        print(f"shard-operator: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except ShardOperatorError as exc:
        print(f"shard-operator: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
