"""The shard-operator command line: run an operator, show its status, manage the test environment.

Commands:
  run --app module:attr              run an operator: leader candidate, worker processes, health server
  status --app module:attr           leader, live shards, queue depths, in-flight and retrying keys
  testenv build|up|down|env|status   the embedded control plane and Redis (for running without a cluster)
  manifests --app module:attr --out DIR   write the CRD, RBAC and StatefulSet as a kustomize base

Every option of ``run`` and ``status`` can also be given as an environment variable
``SHARD_OPERATOR_<OPTION>`` (``--redis-url`` → ``SHARD_OPERATOR_REDIS_URL``; repeated options such as
``--namespace`` take a comma-separated list); a flag wins over the environment.

Every failure the library expects ends in a one-line message on stderr and a non-zero exit code
(2 for bad configuration or input, 1 for anything else), never a traceback; a closed output pipe
(``shard-operator status | head -1``) ends the command quietly.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shard_operator import logs
from shard_operator.config import ENV_PREFIX, Config, redis_url_with_password
from shard_operator.errors import ConfigError, ShardOperatorError
from shard_operator.manifests.cli import add_manifests_parser, cmd_manifests
from shard_operator.redaction import redact_url

if TYPE_CHECKING:
    from shard_operator.operator import Operator

__all__ = ["main"]

EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process ended by SIGPIPE


def version() -> str:
    try:
        return importlib.metadata.version("shard-operator")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from an unpacked tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="shard-operator", description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", action="version", version=f"shard-operator {version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_run_parser(commands)
    add_status_parser(commands)
    add_testenv_parser(commands)
    add_manifests_parser(commands)
    return parser


def add_testenv_parser(commands: Any) -> None:
    testenv = commands.add_parser("testenv", help="build, start, inspect or stop the embedded control plane "
                                  "and Redis")
    testenv.add_argument("--dir", type=Path, default=None,
                         help="state folder (default: $SHARD_OPERATOR_TESTENV_DIR, else "
                              "~/.local/state/shard-operator/testenv)")
    testenv.add_argument("--kubernetes-version", default=None, metavar="MINOR",
                         help="the Kubernetes version to build or start: 1.34 or 1.37 (1.37 serves sharded "
                              "list and watch; default $SHARD_OPERATOR_KUBERNETES_VERSION, else 1.34)")
    actions = testenv.add_subparsers(dest="action", required=True, metavar="ACTION")
    build = actions.add_parser("build", help="build kube-apiserver, etcd and kube-controller-manager from "
                               "source (needs Go >= 1.24; 5-20 minutes the first time)")
    build.add_argument("--dest", type=Path, default=None,
                       help="folder for the binaries (default: ~/.cache/shard-operator/controlplane/bin, "
                            "controlplane-1.37/bin for 1.37, where the test environment looks for them)")
    actions.add_parser("up", help="start etcd, kube-apiserver, kube-controller-manager and redis-server "
                       "in the background")
    actions.add_parser("down", help="stop them and remove the state folder")
    actions.add_parser("status", help="say whether the environment runs")
    env = actions.add_parser("env", help="print KUBECONFIG, REDIS_URL and SHARD_OPERATOR_REDIS_URL of the "
                             "running environment")
    env.add_argument("--export", action="store_true", help="prefix each line with 'export ' for eval")


# -- run and status ---------------------------------------------------------------------------

_DEFAULTS = Config(pod_name="")


def _env(option: str) -> str | None:
    return os.environ.get(ENV_PREFIX + option.upper().replace("-", "_")) or None


def _option(parser: argparse.ArgumentParser, option: str, kind: Callable[[str], Any], default: Any,
            help: str, metavar: str | None = None) -> None:
    """``--option`` whose default comes from ``SHARD_OPERATOR_OPTION``, else ``default``."""
    raw = _env(option)
    if raw is not None:
        try:
            default = kind(raw)
        except ValueError:
            parser.error(f"{ENV_PREFIX}{option.upper().replace('-', '_')}={raw!r} is not a valid value")
    variable = ENV_PREFIX + option.upper().replace("-", "_")
    shown = f" (env {variable})" if default is None else f" (env {variable}; default {default})"
    parser.add_argument(f"--{option}", type=kind, default=default, help=help + shown, metavar=metavar)


def _common_options(parser: argparse.ArgumentParser) -> None:
    _option(parser, "app", str, None, "the operator to run, as module:attribute", "MODULE:ATTR")
    _option(parser, "kubeconfig", str, None, "kubeconfig file (else $KUBECONFIG, ~/.kube/config, in-cluster)")
    _option(parser, "redis-url", str, _DEFAULTS.redis_url, "Redis URL")
    _option(parser, "redis-password-file", str, None, "file holding the Redis password (a mounted Secret), "
            "added to --redis-url so that no environment variable holds it")
    _option(parser, "lease-namespace", str, None, "namespace of the leader-election Lease "
            "(default: the pod's namespace, or 'default')")
    _option(parser, "lease-name", str, None, "name of the Lease (default: <controller>-leader)")
    _option(parser, "member-ttl", float, _DEFAULTS.member_ttl, "seconds without a heartbeat before a shard "
            "leaves the ring")


def add_run_parser(commands: Any) -> None:
    run = commands.add_parser("run", help="run an operator (leader candidate, workers, health server)")
    _common_options(run)
    _option(run, "workers", int, _DEFAULTS.workers, "worker processes (shards) in this pod")
    _option(run, "threads", int, _DEFAULTS.threads, "reconcile threads per worker process")
    _option(run, "claim-batch", int, _DEFAULTS.claim_batch, "keys a worker process claims (and releases) per "
            "Redis round trip when several of its threads are idle (1: one key per call)")
    namespaces = _env("namespace")
    run.add_argument("--namespace", action="append", dest="namespaces", metavar="NAMESPACE",
                     default=None, help="watch this namespace (repeatable; default: the operator's, else all) "
                     f"(env {ENV_PREFIX}NAMESPACE, comma-separated)")
    run.set_defaults(env_namespaces=[n.strip() for n in namespaces.split(",") if n.strip()] if namespaces else None)
    _option(run, "label-selector", str, None, "server-side label selector of the primary resource")
    _option(run, "field-selector", str, None, "server-side field selector of the primary resource")
    _option(run, "qps", float, _DEFAULTS.qps, "global rate of keys handed to workers per second (0: no limit)")
    _option(run, "burst", int, _DEFAULTS.burst, "burst of the global rate limit")
    _option(run, "metrics-address", str, _DEFAULTS.metrics_address,
            "HOST:PORT of /healthz, /readyz and /metrics (0: off)")
    _option(run, "metrics-dir", str, None, "folder for multiprocess metrics (default: a new temporary one)")
    _option(run, "pod-name", str, None, "this pod's name: leader identity and shard prefix "
            "(default: $POD_NAME, else the host name)")
    for option in ("lease-duration", "renew-deadline", "retry-period", "claim-ttl", "heartbeat-interval",
                   "drain-timeout"):
        _option(run, option, float, getattr(_DEFAULTS, option.replace("-", "_")), f"{option} in seconds")
    _option(run, "job-workers", int, None, "RQ job-worker processes in this pod "
            "(default: 1 if the operator registered a background task, else 0)")
    _option(run, "job-timeout", float, _DEFAULTS.job_timeout, "default time limit of a background job in seconds")
    sharded = (_env("sharded-ingest") or "").lower()
    run.add_argument("--sharded-ingest", action="store_true", default=sharded in ("1", "true", "yes", "on"),
                     help="every pod lists and watches the uid-hash ranges of the primary resource the leader "
                          "assigns it (server-side sharded list and watch: Kubernetes >= 1.36 with the feature "
                          "gate ShardedListAndWatch; refused at start when the API server shows that it ignores "
                          f"shard selectors) (env {ENV_PREFIX}SHARDED_INGEST=1)")
    _option(run, "log-level", str, "INFO", "DEBUG, INFO, WARNING or ERROR")
    _option(run, "log-format", str, "text", "text (one readable line per record) or json (one object per "
            "line, for log pipelines)")


def add_status_parser(commands: Any) -> None:
    status = commands.add_parser("status", help="show leader, shards, queue depths, in-flight and retrying keys")
    _common_options(status)
    _option(status, "controller", str, None, "the controller name (instead of --app)")
    status.add_argument("--json", action="store_true", help="print JSON")


def load_operator(spec: str | None) -> Operator:
    """Import ``module:attr`` and return the :class:`~shard_operator.operator.Operator` it names."""
    from shard_operator.operator import Operator

    if not spec:
        raise ConfigError("--app is required (module:attribute naming an Operator), or set "
                          f"{ENV_PREFIX}APP")
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"--app {spec!r} must look like module:attribute")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # the console script does not put the working folder on the path
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ConfigError(f"--app {spec}: cannot import {module_name}: {exc}") from None
        raise ConfigError(f"--app {spec}: {_where(exc)}: {type(exc).__name__}: {exc}") from None
    except SyntaxError as exc:
        raise ConfigError(f"--app {spec}: {exc.filename} line {exc.lineno}: SyntaxError: {exc.msg}") from None
    except Exception as exc:
        raise ConfigError(f"--app {spec}: importing {module_name} failed at {_where(exc)}: "
                          f"{type(exc).__name__}: {exc}") from None
    try:
        found: Any = getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"--app {spec}: module {module_name} has no attribute {attr!r}") from None
    if not isinstance(found, Operator) and callable(found):
        found = found()
    if not isinstance(found, Operator):
        raise ConfigError(f"--app {spec}: {attr} is a {type(found).__name__}, not a shard_operator.Operator")
    return found


def _where(exc: BaseException) -> str:
    """``FILE line N`` of the innermost frame of ``exc`` that is not the import machinery."""
    frames = [frame for frame in traceback.extract_tb(exc.__traceback__)
              if not frame.filename.startswith("<frozen ")]
    if not frames:
        return "unknown location"
    return f"{frames[-1].filename} line {frames[-1].lineno}"


def config_from_args(args: argparse.Namespace) -> Config:
    values = {name: getattr(args, name) for name in (
        "redis_url", "kubeconfig", "workers", "threads", "claim_batch", "label_selector", "field_selector", "qps",
        "burst", "metrics_address", "metrics_dir", "lease_namespace", "lease_name", "lease_duration", "renew_deadline",
        "retry_period", "claim_ttl", "member_ttl", "heartbeat_interval", "drain_timeout", "job_workers",
        "job_timeout", "redis_password_file", "sharded_ingest")}
    values["namespaces"] = args.namespaces or args.env_namespaces
    config = Config(**values)
    if args.pod_name:
        config.pod_name = args.pod_name
    return config.validate()


def cmd_run(args: argparse.Namespace) -> int:
    logs.configure(args.log_level, args.log_format)
    logs.set_process("manager")
    operator = load_operator(args.app)
    logs.set_process("manager", controller=operator.name)
    config = config_from_args(args)
    from shard_operator.manager import Manager

    return Manager(operator, config).run()


def cmd_status(args: argparse.Namespace) -> int:
    from shard_operator.manager import connect_api, connect_redis
    from shard_operator.manager.status import collect_status, format_status

    controller = args.controller or load_operator(args.app).name
    if args.kubeconfig is not None and not Path(args.kubeconfig).is_file():
        raise ConfigError(f"kubeconfig {args.kubeconfig} does not exist")
    client = connect_redis(redis_url_with_password(args.redis_url, args.redis_password_file))
    api = connect_api(args.kubeconfig)
    lease = Config(lease_namespace=args.lease_namespace, lease_name=args.lease_name).lease(controller)
    try:
        status = collect_status(client, controller, api_client=api, lease=lease, member_ttl=args.member_ttl)
    finally:
        client.close()
        api.close()
    if not _controller_seen(status):
        raise ShardOperatorError(f"no controller {controller!r}: no leader Lease {lease[0]}/{lease[1]} and "
                                 f"nothing of it in Redis at {redact_url(args.redis_url)} (is the name right, and does "
                                 "the operator run?)")
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def _controller_seen(status: dict[str, Any]) -> bool:
    """Whether anything of the controller exists: a leader, shards, queued or retrying keys, or jobs."""
    return bool(status.get("leader") or status.get("epoch") or status.get("ring") or status.get("live_shards")
                or status.get("pending") or status.get("dirty") or status.get("in_flight")
                or status.get("retrying") or status.get("jobs") or status.get("leader_error"))


def cmd_testenv(args: argparse.Namespace) -> int:
    if args.action == "build":
        from shard_operator.testing.binaries import build_controlplane, kubernetes_version, user_cache_bin_dir

        version = kubernetes_version(args.kubernetes_version)
        build_controlplane(args.dest or user_cache_bin_dir(version), version)
        return 0
    from shard_operator.testing import testenv

    folder = args.dir or testenv.default_state_dir()
    if args.action == "up":
        state, started = testenv.testenv_up(folder, args.kubernetes_version)
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
        version = running.kubernetes_version or "1.34"
        print(f"running: API server {running.server_url} (Kubernetes {version}), Redis {running.redis_url}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exit_:  # --help, --version and usage errors
            sys.stdout.flush()
            return exit_.code if isinstance(exit_.code, int) else EXIT_CONFIG
        logs.configure("WARNING", "text")  # `run` reconfigures with its own options
        return _dispatch(args)
    except BrokenPipeError:
        # The reader of our output went away (`| head`): say nothing more, and keep Python's
        # exit-time flush of stdout from raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if args.command == "run":
            return cmd_run(args)
        if args.command == "status":
            return cmd_status(args)
        if args.command == "testenv":
            return cmd_testenv(args)
        if args.command == "manifests":
            return cmd_manifests(args)
        raise ConfigError(f"unknown command {args.command!r}")
    except ConfigError as exc:  # every error line is redacted, whichever site raised it
        print(f"shard-operator: {redact_url(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except ShardOperatorError as exc:
        print(f"shard-operator: {redact_url(str(exc))}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
