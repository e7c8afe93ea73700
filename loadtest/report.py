"""The run's report: ``results.json`` (stable field names), ``report.md`` and PNG plots.

Where it sits: last step of ``python -m loadtest``. Plots (matplotlib, Agg backend, small PNGs):
``latency.png`` (each change's create/update -> status latency at the time it was made, fault markers),
``queue.png`` (queue depth and p99 queue latency), ``throughput.png`` (reconciles/s), ``resources.png``
(CPU and RSS of the operator's processes, Redis memory). ``scale.png`` when the scale scenario ran.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_report"]


def _plots(results: dict[str, Any], folder: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = results["started"]
    series = [p for p in results.get("series", []) if "error" not in p]
    t = [p["t"] - start for p in series]
    made: list[str] = []

    def faults(ax: Any) -> None:
        for fault in results.get("faults", []):
            ax.axvline(fault["start"] - start, color="red", alpha=0.5, lw=1)
            ax.text(fault["start"] - start, ax.get_ylim()[1], fault["name"], rotation=90, va="top", fontsize=6,
                    color="red")

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(folder / name, dpi=70)
        plt.close(fig)
        made.append(name)

    changes = [c for c in results.get("changes", []) if c[1] is not None]
    if changes:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.scatter([c[0] for c in changes], [c[1] for c in changes], s=3)
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("change -> status (s)")
        ax.set_title("create/update -> status latency")
        faults(ax)
        save(fig, "latency.png")
    if series:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot(t, [p.get("queue_depth", 0) for p in series], label="queue depth")
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("keys")
        ax2 = ax.twinx()
        ax2.plot(t, [p.get("queue_latency_p99_s") or 0 for p in series], color="orange", label="p99 queue latency")
        ax2.set_ylabel("p99 queue latency (s)")
        ax.set_title("work queue")
        faults(ax)
        save(fig, "queue.png")
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.plot(t, [p.get("reconciles_per_s", 0) for p in series])
        ax.set_xlabel("time since start (s)")
        ax.set_ylabel("reconciles/s")
        ax.set_title("throughput")
        faults(ax)
        save(fig, "throughput.png")
        fig, ax = plt.subplots(figsize=(7, 3))
        cpu = [p.get("cpu_s_total", 0) for p in series]
        rates = [0.0] + [max(0.0, (b - a) / max(t2 - t1, 1e-6) * 100) for a, b, t1, t2 in
                         zip(cpu, cpu[1:], t, t[1:], strict=False)]
        ax.plot(t, rates, label="operator CPU %")
        ax.set_ylabel("CPU % (all processes)")
        ax2 = ax.twinx()
        ax2.plot(t, [p.get("rss_total_mb", 0) for p in series], color="green", label="RSS MiB")
        ax2.plot(t, [p.get("redis_used_memory_mb", 0) for p in series], color="purple", label="Redis MiB")
        ax2.set_ylabel("MiB")
        ax2.legend(loc="upper right", fontsize=7)
        ax.set_xlabel("time since start (s)")
        ax.set_title("CPU and memory")
        faults(ax)
        save(fig, "resources.png")
    scale = results.get("figures", {}).get("scale")
    if scale:
        fig, ax = plt.subplots(figsize=(5, 3))
        for pods in sorted({row["pods"] for row in scale}):
            rows = [r for r in scale if r["pods"] == pods]
            ax.plot([r["workers"] * pods for r in rows], [r["objects_per_s"] or 0 for r in rows], marker="o",
                    label=f"R={pods}")
        ax.set_xlabel("worker processes in all")
        ax.set_ylabel("objects/s (burst)")
        ax.legend()
        ax.set_title("throughput vs workers")
        save(fig, "scale.png")
    return made


def _fmt(value: Any) -> str:
    return "n/a" if value is None else str(value)


def _worker_rss(resources: dict[str, Any]) -> str:
    peaks = [v for k, v in resources.get("rss_peak_mb_by_process", {}).items() if "/worker/" in k]
    return f"{min(peaks)}-{max(peaks)} ({len(peaks)})" if peaks else "n/a"


def markdown(results: dict[str, Any], plots: list[str], gates: list[dict[str, Any]]) -> str:
    o, lat, res, chk = results["options"], results["latency"], results["resources"], results["checker"]
    lines = [f"# Load lab run `{results['run_id']}`: {results['scenario']}", "",
             f"Machine: {results['machine']['cpus']} CPUs, Python {results['machine']['python']}. "
             f"Objects {o['objects']}, rate {o['rate']}/s, duration {o['duration_s']} s, "
             f"pods {o['pods']} x workers {o['workers']}, faults: {', '.join(o['faults']) or 'none'}.", "",
             "| figure | value |", "|---|---|"]
    rows = [("changes (creates + updates)", lat["changes"]), ("change -> status p50 / p90 / p99 (s)",
            f"{_fmt(lat['p50_s'])} / {_fmt(lat['p90_s'])} / {_fmt(lat['p99_s'])}"),
            ("unconverged changes", lat["unconverged"]), ("queue latency p99 (s)", results["queue"]["latency_p99_s"]),
            ("max queue depth", results["queue"]["max_depth"]), ("reconciles", results["reconciles"]),
            ("CPU s per 1,000 reconciles", res["cpu_s_per_1000_reconciles"]),
            ("peak RSS MiB by process role", ", ".join(f"{k} {v}" for k, v in res["rss_peak_mb"].items())),
            ("peak RSS MiB per worker process (min-max, processes)", _worker_rss(res)),
            ("Redis memory max (MiB) / ops/s max", f"{res['redis_used_memory_mb_max']} / {res['redis_ops_per_s_max']}"),
            ("operator API requests per reconcile", json.dumps(results["api_requests"]["operator_per_reconcile"]))]
    rows += [(f"scenario: {k}", v) for k, v in results.get("figures", {}).items() if not isinstance(v, list | dict)]
    lines += [f"| {k} | {_fmt(v)} |" for k, v in rows]
    lines += ["", "## Invariants", ""]
    if chk.get("recorded"):
        lines.append(f"- I1 overlaps: {len(chk['overlaps'])} (fenced, no effect: {len(chk['fenced_overlaps'])})")
        lines.append(f"- I3 reconciles per change: {_fmt(chk['collapse_ratio'])}")
        lines.append(f"- I4 failing keys {chk['failing_keys']}, retries {chk['retries']}, min gap "
                     f"{_fmt(chk['min_retry_gap_s'])} s, backoff violations {len(chk['backoff_violations'])}")
    else:
        lines.append("- I1, I3, I4: not recorded (black-box operator)")
    lines.append(f"- I2 lost updates: {len(chk['lost'])}")
    if results.get("faults"):
        lines += ["", "## Faults", "", "| at (s) | fault | what | recovery (s) | worst change latency (s) |",
                  "|---|---|---|---|---|"]
        lines += [f"| {f['offset_s']} | {f['name']} | {f['detail']} | {_fmt(f['recovery_s'])} | "
                  f"{_fmt(f['extra'].get('worst_latency_s'))} |" for f in results["faults"]]
    steps = results.get("figures", {}).get("steps")
    if steps:
        lines += ["", "## Stress steps", "", "| rate/s | achieved/s | queue p99 (s) | change p99 (s) |",
                  "|---|---|---|---|"]
        lines += [f"| {s['rate']} | {s['achieved_changes_per_s']} | {_fmt(s['queue_latency_p99_s'])} | "
                  f"{_fmt(s['latency_p99_s'])} |" for s in steps]
    scale = results.get("figures", {}).get("scale")
    if scale:
        lines += ["", "## Scale", "", "| pods | workers/pod | converged (s) | objects/s |", "|---|---|---|---|"]
        lines += [f"| {r['pods']} | {r['workers']} | {_fmt(r['convergence_s'])} | {_fmt(r['objects_per_s'])} |"
                  for r in scale]
    if gates:
        lines += ["", "## SLO gates", "", "| gate | limit | value | status |", "|---|---|---|---|"]
        lines += [f"| {g['gate']} | {g['limit']} | {g.get('reason') or _fmt(g['value'])} | {g['status']} |"
                  for g in gates]
    lines += [""] + [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def write_report(results: dict[str, Any], folder: Path, gates: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    results = {**results, "slo": gates}
    (folder / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    plots = _plots(results, folder)
    path = folder / "report.md"
    path.write_text(markdown(results, plots, gates))
    return path
