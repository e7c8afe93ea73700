"""Plot the dashboard's panels from a real Prometheus (its query_range API), since Grafana cannot run here.

Used by tests/deploy/test_dashboard.py when ``SHARD_OPERATOR_DASHBOARD_PNG`` names a file: after the load,
every panel of :data:`shard_operator.manifests.monitoring.PANELS` is drawn as Grafana would (one line per
series, the panel's legend) into one picture, which the README shows. Needs matplotlib (not a test
dependency: ``pip install matplotlib``).
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from shard_operator.manifests.monitoring import PANELS

__all__ = ["plot_dashboard"]


def _query_range(base: str, expr: str, start: float, end: float, step: float) -> list[dict[str, Any]]:
    url = f"{base}/api/v1/query_range?" + urllib.parse.urlencode(
        {"query": expr, "start": start, "end": end, "step": step})
    with urllib.request.urlopen(url, timeout=10) as answer:
        return list(json.load(answer)["data"]["result"])


def _legend(template: str, labels: dict[str, str]) -> str:
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m[1], ""), template)


def plot_dashboard(base: str, out: Path, *, seconds: float = 300.0, step: float = 2.0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = time.time()
    start = end - seconds
    columns = 3
    rows = -(-len(PANELS) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 3 * rows), squeeze=False)
    for axis, (title, unit, queries) in zip(axes.flat, PANELS, strict=False):
        for expr, legend in queries:
            for series in _query_range(base, expr, start, end, step):
                points = [(float(t) - end, float(v)) for t, v in series["values"]]
                axis.plot([p[0] for p in points], [p[1] for p in points],
                          label=_legend(legend, series["metric"]) or expr[:30])
        axis.set_title(f"{title} ({unit})", fontsize=10)
        axis.set_xlabel("seconds before the end of the run", fontsize=8)
        axis.tick_params(labelsize=8)
        if axis.lines:
            axis.legend(fontsize=7, loc="upper left")
        else:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
    for axis in list(axes.flat)[len(PANELS):]:
        axis.set_visible(False)
    figure.suptitle("shard-operator dashboard, from a real Prometheus during a short load", fontsize=12)
    figure.tight_layout()
    figure.savefig(out, dpi=80)
    plt.close(figure)
    return out
