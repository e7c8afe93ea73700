"""``python -m loadtest SCENARIO``: the load, stress and fault lab's command line.

Where it sits: the entry point. It builds a :class:`~loadtest.runner.Run`, runs a scenario from
``loadtest.scenarios`` (or ``scale``, here) with a live progress display, writes the report
(``loadtest.report``) and applies the SLO gates (``loadtest.slo``): exit 1 when one is broken,
2 for bad arguments or a run that could not be set up (one line on stderr, no traceback). Examples::

    python -m loadtest steady --objects 100 --rate 10 --duration 30 --fault kill-worker:10
    python -m loadtest burst --objects 1000 --workers 2
    python -m loadtest stress --objects 200 --rate 20 --duration 10
    python -m loadtest scale --objects 300
    python -m loadtest suite                    # a short run of every scenario and fault (make loadtest)
    python -m loadtest kwok --nodes 200 --pods 2000   # Pods with selectors over KWOK (loadtest.kwokscenario)
    python -m loadtest steady --operator-cmd "my-operator --kubeconfig {kubeconfig}" --crd my-crd.yaml \\
        --converged-jsonpath '{.status.observedGeneration}'
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path
from typing import Any

from loadtest import faults as fault_module
from loadtest.faults import parse_fault
from loadtest.report import write_report
from loadtest.runner import Run, RunOptions
from loadtest.scenarios import SCENARIOS, stress
from loadtest.slo import evaluate, load_slo

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__.split("\n\n")[0],
                                     epilog="Faults, each a --fault" + fault_module.__doc__.split("Names", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=[*SCENARIOS, "scale"])
    parser.add_argument("--objects", type=int, default=100, help="objects to create (N)")
    parser.add_argument("--rate", type=float, default=10.0, help="changes per second (U; stress: first step)")
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load (D; stress: per step)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per pod (W)")
    parser.add_argument("--threads", type=int, default=1, help="reconcile threads per worker")
    parser.add_argument("--qps", type=float, default=0.0,
                        help="the sample operator's global work-queue rate limit, keys/s (default 0: none, so "
                             "stress measures the pipeline rather than the operator's default limit of 10/s)")
    parser.add_argument("--pods", type=int, default=1, help="operator pods, each its own manager process (R)")
    parser.add_argument("--work-s", type=float, default=0.005, help="seconds each sample reconcile works")
    parser.add_argument("--fault", action="append", default=[], metavar="NAME[:ARG]", help="inject a fault")
    parser.add_argument("--operator-cmd", default=None, help="a black-box operator's shell command")
    parser.add_argument("--crd", type=Path, default=None, help="the black-box operator's CRD (YAML)")
    parser.add_argument("--converged-jsonpath", default="{.status.observedGeneration}",
                        help="converged when this is >= metadata.generation")
    parser.add_argument("--converged-value", default=None, help="converged when the JSONPath equals this instead")
    parser.add_argument("--lease-name", default=None,
                        help="the Lease the leader holds, in the run's namespace (kill-leader; default: the "
                             "sample workload's loadobjects-leader; a black box needs it, e.g. widgets-leader)")
    parser.add_argument("--kubeconfig", default=None, help="use this cluster instead of the embedded one")
    parser.add_argument("--redis-url", default=None, help="use this Redis instead of the embedded one")
    parser.add_argument("--slo", type=Path, default=None, help="SLO gates YAML (default loadtest/slo.yaml)")
    parser.add_argument("--out", type=Path, default=Path("loadtest/results"), help="results folder")
    parser.add_argument("--timeout", type=float, default=180.0, help="longest wait for convergence (s)")
    parser.add_argument("--max-steps", type=int, default=12, help="stress: most rate steps")
    parser.add_argument("--no-progress", action="store_true", help="no live display")
    return parser


class Progress(threading.Thread):
    """A live line: phase, elapsed time, converged/made changes, queue depth, faults so far."""

    def __init__(self, run: Run, live: bool) -> None:
        super().__init__(name="progress", daemon=True)
        self.run_, self.live, self.done = run, live, threading.Event()

    def line(self) -> str:
        run = self.run_
        conv = run.convergence
        depth = next((p.get("queue_depth") for p in reversed(run.sampler.series) if "queue_depth" in p), 0)
        return (f"[{time.time() - run.started:6.1f}s] {run.phase:<14} converged {conv.converged_count()}"
                f"/{len(conv.changes)}  queue {depth:.0f}  faults {len(run.events)}")

    def run(self) -> None:
        if self.live:
            from rich.console import Console
            from rich.live import Live

            with Live(self.line(), console=Console(stderr=True), refresh_per_second=4) as live:
                while not self.done.wait(0.25):
                    live.update(self.line())
        else:
            while not self.done.wait(5.0):
                print(self.line(), file=sys.stderr, flush=True)


def scale(run: Run, options: RunOptions) -> dict[str, Any]:
    """The burst scenario for W = 1, 2, 4 workers in one pod, then R = 1, 2, 3 pods of W workers."""
    rows = []
    configs = [(1, w) for w in (1, 2, 4)] + [(r, options.workers) for r in (2, 3)]
    for index, (pods, workers) in enumerate(configs):
        run.stop_pods()
        run.redis_client.flushdb()
        run.start_pods(pods, workers, prefix=f"s{index}")
        run.set_phase(f"scale R{pods}xW{workers}")
        names = [f"s{index}-{i:05d}" for i in range(options.objects)]
        started = time.time()
        run.driver.create_many(names)
        converged = run.wait_converged()
        took = None if converged is None else round(time.time() - started, 2)
        rows.append({"pods": pods, "workers": workers, "convergence_s": took,
                     "objects_per_s": round(options.objects / took, 1) if took else None})
        for name in names:
            run.driver.delete(name)
        run.wait_gone()
    run.set_phase("done")
    return {"scale": rows, "finals": {}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["suite"]:
        from loadtest.suite import main as suite

        return suite(argv[1:])
    if argv[:1] == ["kwok"]:
        from loadtest.kwokscenario import main as kwok

        return kwok(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        faults = [parse_fault(text) for text in args.fault]
        slo = load_slo(args.slo)
    except (ValueError, OSError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 2
    if args.operator_cmd and not args.crd:
        print("loadtest: --operator-cmd needs --crd (the resource the operator reconciles)", file=sys.stderr)
        return 2
    if args.crd and not args.crd.is_file():
        print(f"loadtest: --crd {args.crd}: no such file", file=sys.stderr)
        return 2
    options = RunOptions(scenario=args.scenario, objects=args.objects, rate=args.rate, duration=args.duration,
                         workers=args.workers, threads=args.threads, qps=args.qps, pods=args.pods, work_s=args.work_s,
                         faults=faults, operator_cmd=args.operator_cmd, crd=args.crd,
                         converged_jsonpath=args.converged_jsonpath, converged_value=args.converged_value,
                         lease_name=args.lease_name, kubeconfig=args.kubeconfig, redis_url=args.redis_url,
                         converge_timeout=args.timeout, out=args.out)
    try:
        run = Run(options).__enter__()
    except Exception as exc:  # the environment, the CRD or the pods: say what, not a traceback
        print(f"loadtest: the run could not be set up: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    try:
        progress = Progress(run, live=not args.no_progress and sys.stderr.isatty())
        progress.start()
        try:
            if args.scenario == "scale":
                figures = scale(run, options)
            elif args.scenario == "stress":
                figures = stress(run, max_steps=args.max_steps)
            else:
                figures = SCENARIOS[args.scenario](run)
        finally:
            progress.done.set()
            progress.join(2)
        finals = figures.pop("finals")
        results = run.results(finals, {"figures": figures})
        folder = run.dir
    finally:
        run.__exit__(None, None, None)
    gates = evaluate(results, slo)
    report = write_report(results, folder, gates)
    broken = [g for g in gates if g["status"] == "broken"]
    print(report.read_text().split("\n## Faults")[0].split("\n![")[0])
    print(f"report: {report}")
    if broken:
        print("SLO broken: " + ", ".join(f"{g['gate']} {g['reason']}" if "reason" in g else
                                         f"{g['gate']}={g['value']} > {g['limit']}" for g in broken), file=sys.stderr)
        return 1
    return 0
