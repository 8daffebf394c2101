"""A PNG of latency against load from the benchmark's results (needs matplotlib)."""

from __future__ import annotations

from pathlib import Path

STYLE = {"direct": ("tab:gray", "direct to mock"), "circuit": ("tab:blue", "through Circuit"),
         "circuit-w1": ("tab:orange", "Circuit 1 worker, unpinned"),
         "circuit-w2": ("tab:green", "Circuit --workers 2, unpinned")}


def plot(results: dict, path: Path) -> Path | None:
    """Non-streaming latency (p50, p99) and throughput by concurrency; None without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    series: dict[str, list[dict]] = {}
    for s in results.get("scenarios", []):
        if s["mode"] == "json" and s["target"] != "circuit-4k":
            series.setdefault(s["target"], []).append(s)
    if not series:
        return None
    fig, (lat_ax, rps_ax) = plt.subplots(1, 2, figsize=(12, 4.8))
    for target, points in series.items():
        points.sort(key=lambda s: s["concurrency"])
        color, label = STYLE.get(target, ("tab:red", target))
        rps = [p["rps"] for p in points]
        p50 = [p["latency_ms"]["p50"] for p in points]
        p99 = [p["latency_ms"]["p99"] for p in points]
        lat_ax.plot(rps, p50, "o-", color=color, label=f"{label} p50")
        lat_ax.plot(rps, p99, "s--", color=color, alpha=0.6, label=f"{label} p99")
        for p in points:
            lat_ax.annotate(f"c={p['concurrency']}", (p["rps"], p["latency_ms"]["p50"]),
                            textcoords="offset points", xytext=(4, -10), fontsize=7,
                            color=color)
        rps_ax.plot([p["concurrency"] for p in points], rps, "o-", color=color, label=label)
    lat_ax.set(xscale="log", yscale="log", xlabel="throughput (requests/s)",
               ylabel="latency (ms)", title="Latency against load (non-streaming)")
    lat_ax.grid(True, which="both", alpha=0.3)
    lat_ax.legend(fontsize=7)
    rps_ax.axhline(3000, color="tab:red", linestyle=":", label="target 3,000 req/s")
    rps_ax.set(xscale="log", yscale="log", xlabel="concurrent connections",
               ylabel="requests/s", title="Throughput by concurrency")
    rps_ax.grid(True, which="both", alpha=0.3)
    rps_ax.legend(fontsize=7)
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    for axis in (lat_ax.xaxis, lat_ax.yaxis, rps_ax.xaxis, rps_ax.yaxis):
        axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
        axis.set_minor_formatter(NullFormatter())
    meta = results.get("meta", {})
    fig.suptitle(f"Circuit {meta.get('commit', '')} {meta.get('date', '')}, gateway pinned to "
                 f"one core: {meta.get('pinned')}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
