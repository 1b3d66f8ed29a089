"""Draws plot.png from results.json: publish→receive latency percentiles against the delivered
rate, one line per server, for each fan-out size. Runs in the bench venv (matplotlib)."""

from __future__ import annotations

import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(src: str, dst: str) -> None:
    with open(src) as f:
        res = json.load(f)
    sizes = [k for k in res["scenarios"] if k.startswith("fanout_")]
    fig, axes = plt.subplots(1, max(1, len(sizes)), figsize=(5.5 * max(1, len(sizes)), 4.2), squeeze=False)
    for ax, key in zip(axes[0], sizes):
        for name, v in res["scenarios"][key].items():
            if "open" not in v:
                continue
            xs, p50, p99 = [], [], []
            for rate, runs in sorted(v["open"].items(), key=lambda kv: int(kv[0])):
                xs.append(statistics.median(r["deliveries_per_s"] for r in runs))
                p50.append(statistics.median(r["lat_ms"]["p50"] for r in runs))
                p99.append(statistics.median(r["lat_ms"]["p99"] for r in runs))
            closed = statistics.median(r["deliveries_per_s"] for r in v["closed"])
            line, = ax.plot(xs, p99, marker="o", label=f"{name} p99")
            ax.plot(xs, p50, marker=".", linestyle="--", color=line.get_color(), label=f"{name} p50")
            ax.axvline(closed, color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("delivered events/s (dotted: closed-loop maximum)")
        ax.set_ylabel("publish→receive latency (ms)")
        ax.set_title(key.replace("fanout_", "fan-out, ") + " subscribers")
        ax.grid(True, which="both", alpha=0.3)
    if axes[0][-1].get_legend_handles_labels()[0]:
        axes[0][-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    fig.savefig(dst, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
