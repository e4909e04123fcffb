"""The throughput chart (docs/throughput.png): file size / median wall time against size."""

from __future__ import annotations

from pathlib import Path

from bench.common import MB, log
from bench.results import Results

CURVES = [("dense", "bigfile", "ours: dense same-length replace", "-o"),
          ("dense", "sed -i", "sed -i: dense replace", "--o"),
          ("sparse", "bigfile", "ours: sparse length-changing replace", "-s"),
          ("sparse", "sed -i", "sed -i: sparse replace", "--s"),
          ("insert", "bigfile", "ours: insert at offset 100", "-^"),
          ("dense", "cp", "cp", ":d")]


def chart(res: Results, sizes: list[int], path: Path) -> bool:
    """Draw the chart into ``path``; False (and a log line) without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed: no chart (pip install '.[bench]')")
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    xs = [s / (1 << 30) for s in sizes]
    for bench, tool, label, style in CURVES:
        ys = []
        for s in sizes:
            series = res.get(bench, s, tool)
            ys.append(s / series.median / MB if series and series.runs else float("nan"))
        ax.plot(xs, ys, style, label=label)
    ax.set_xlabel("file size (GiB)")
    ax.set_ylabel("throughput (MB/s, file size / wall time)")
    ax.set_yscale("log")
    ax.set_title("airflow-bigfile vs sed and cp (medians, start-up included)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True
