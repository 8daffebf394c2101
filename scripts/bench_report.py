"""The benchmark's verdict: targets checked against the results, a table for people, JSON for
machines (bench-results/latest.json)."""

from __future__ import annotations

import json
from pathlib import Path

# name, description, threshold (for the JSON), how to compute and judge it.
TARGETS = (
    ("json_c64_vs_bare", "non-streaming c=64 >= 75% of the bare relay's req/s", 0.75),
    ("sse_c64_vs_bare", "streaming c=64 >= 75% of the bare relay's streams/s", 0.75),
    ("added_latency_c1_vs_bare", "added latency c=1 p50 <= 1.5x the bare relay's", 1.5),
    ("cpu_vs_bare", "(info) gateway CPU per request c=64 JSON, over the bare relay's", None),
    *((f"{door}_{mode}_c64_vs_bare", f"{door} door {word} c=64 >= 75% of the bare relay's",
       0.75) for door in ("messages", "responses")
      for mode, word in (("json", "JSON"), ("sse", "streams"))),
    *((f"{door}_cpu_vs_chat", f"(info) {door} door CPU per request c=64, over chat's", None)
      for door in ("messages", "responses")),
    ("json_c64_rps", "non-streaming c=64 >= 3,000 req/s, 0 errors", 3000.0),
    ("added_latency_c1_p50", "added latency c=1 p50 <= 0.5 ms over direct", 0.5),
    ("sse_c64_rate", "streaming c=64 >= 1,500 streams/s", 1500.0),
    ("added_ttfb_c64_p50", "streaming TTFB p50 <= 1 ms over direct", 1.0),
    ("added_ttfb_c1_p50", "(info) streaming TTFB p50 at c=1 <= 1 ms over direct", 1.0),
    ("rss_1000_streams", "peak RSS < 150 MB with 1,000 open streams", 150.0),
    ("workers2_scaling", "--workers 2 >= 1.7x one worker (c=64 JSON)", 1.7),
    ("records", "one request row per request sent", None),
    ("load_headroom", "(info) load side >= 5x the gateway: direct/circuit c=64", 5.0),
)


def key(target: str, mode: str, concurrency: int) -> str:
    return f"{target}/{mode}/c{concurrency}"


def _find(results: dict, name: str) -> dict | None:
    return next((s for s in results.get("scenarios", []) if s["key"] == name), None)


def _p50(scenario: dict | None, metric: str) -> float | None:
    return scenario[metric]["p50"] if scenario and scenario[metric]["p50"] is not None else None


def evaluate(results: dict) -> list[dict]:
    """One entry per target: value, a short text, and passed (None when not measured)."""
    out = []
    for name, text, threshold in TARGETS:
        value, shown, passed = None, "not measured", None
        if name in ("json_c64_vs_bare", "sse_c64_vs_bare"):
            mode = "json" if name == "json_c64_vs_bare" else "sse"
            ours, floor = (_find(results, key(t, mode, 64)) for t in ("circuit", "bare"))
            if ours and floor and floor["rps"]:
                value = ours["rps"] / floor["rps"]
                shown = (f"{100 * value:.0f}% ({ours['rps']:,.0f} vs {floor['rps']:,.0f}/s, "
                         f"{ours['errors_total']} errors)")
                passed = value >= threshold and ours["errors_total"] == 0
        elif name.endswith("_c64_vs_bare") and name.startswith(("messages", "responses")):
            door, mode = name.split("_")[:2]
            ours, floor = (_find(results, key(f"{t}-{door}", mode, 64))
                           for t in ("circuit", "bare"))
            if ours and floor and floor["rps"]:
                value = ours["rps"] / floor["rps"]
                shown = (f"{100 * value:.0f}% ({ours['rps']:,.0f} vs {floor['rps']:,.0f}/s, "
                         f"{ours['errors_total']} errors)")
                passed = value >= threshold and ours["errors_total"] == 0
        elif name.endswith("_cpu_vs_chat"):
            door = name.split("_")[0]
            cells = []
            for mode in ("json", "sse"):
                ours, chat = ((_find(results, key(t, mode, 64)) or {}).get("gateway") or {}
                              for t in (f"circuit-{door}", "circuit"))
                a, b = ours.get("cpu_us_per_request"), chat.get("cpu_us_per_request")
                if a and b:
                    cells.append(f"{mode} {a / b:.2f}x ({a:.0f} vs {b:.0f} us)")
            if cells:
                shown = ", ".join(cells)
        elif name == "added_latency_c1_vs_bare":
            g, b, d = (_p50(_find(results, key(t, "json", 1)), "latency_ms")
                       for t in ("circuit", "bare", "direct"))
            if g is not None and b is not None and d is not None and b > d:
                value = (g - d) / (b - d)
                shown = f"{value:.2f}x (+{g - d:.3f} vs +{b - d:.3f} ms over direct)"
                passed = value <= threshold
        elif name == "cpu_vs_bare":
            ours, floor = ((_find(results, key(t, "json", 64)) or {}).get("gateway") or {}
                           for t in ("circuit", "bare"))
            a, b = ours.get("cpu_us_per_request"), floor.get("cpu_us_per_request")
            if a and b:
                value = a / b
                shown = f"{value:.2f}x ({a:.0f} vs {b:.0f} us; Circuit's own work {a - b:.0f} us)"
        elif name == "json_c64_rps" and (s := _find(results, key("circuit", "json", 64))):
            value = s["rps"]
            errors = s["errors_total"]
            shown = f"{value:,.0f} req/s, {errors} errors"
            if cap := (s.get("gateway") or {}).get("capacity_per_core"):
                shown += f" (cap {cap:,.0f}/s)"
            passed = value >= threshold and errors == 0
        elif name == "added_latency_c1_p50":
            g, d = (_p50(_find(results, key(t, "json", 1)), "latency_ms")
                    for t in ("circuit", "direct"))
            if g is not None and d is not None:
                value = g - d
                shown = f"+{value:.3f} ms ({g:.3f} vs {d:.3f})"
                passed = value <= threshold
        elif name == "sse_c64_rate" and (s := _find(results, key("circuit", "sse", 64))):
            value = s["rps"]
            shown = f"{value:,.0f} streams/s, {s['errors_total']} errors"
            passed = value >= threshold
        elif name in ("added_ttfb_c64_p50", "added_ttfb_c1_p50"):
            c = 64 if name == "added_ttfb_c64_p50" else 1
            g, d = (_p50(_find(results, key(t, "sse", c)), "ttfb_ms")
                    for t in ("circuit", "direct"))
            if g is not None and d is not None:
                value = g - d
                shown = f"+{value:.3f} ms ({g:.3f} vs {d:.3f})"
                passed = value <= threshold
        elif name == "rss_1000_streams" and (hold := results.get("hold")):
            value = hold["peak_rss_mb"]
            shown = (f"{value:.1f} MB peak ({hold['idle_rss_mb']:.1f} idle), "
                     f"{hold['peak_open_streams']}/{hold['streams']} open at once")
            passed = value < threshold and hold["peak_open_streams"] >= hold["streams"] \
                and hold["errors_total"] == 0
        elif name == "workers2_scaling":
            one = _find(results, key("circuit", "json", 64))
            two = _find(results, key("circuit-w2", "json", 64))
            free = _find(results, key("circuit-w1", "json", 64))
            if one and two and one["rps"]:
                # Judged against the pinned worker, the stronger of the two one-worker runs.
                value = two["rps"] / one["rps"]
                shown = f"{value:.2f}x ({two['rps']:,.0f} vs {one['rps']:,.0f} req/s pinned"
                if free and free["rps"]:
                    shown += f"; {two['rps'] / free['rps']:.2f}x unpinned"
                shown += ")"
                passed = value >= threshold
        elif name == "records" and results.get("records"):
            sent = sum(r["sent"] for r in results["records"])
            rows = sum(r["rows"] for r in results["records"])
            value = rows
            shown = f"{rows:,} rows for {sent:,} requests sent"
            passed = all(r["match"] for r in results["records"])
        elif name == "load_headroom":
            direct = _find(results, key("direct", "json", 64))
            through = _find(results, key("circuit", "json", 64))
            if direct and through and through["rps"]:
                value = direct["rps"] / through["rps"]
                shown = (f"{value:.1f}x ({direct['rps']:,.0f} vs {through['rps']:,.0f} req/s; "
                         f"load CPU {through['cpu']['pct']}%)")
                passed = value >= threshold
        out.append({"name": name, "target": text, "threshold": threshold, "value": value,
                    "result": shown, "pass": passed})
    return out


def _num(value: float | None, fmt: str = "{:.3f}") -> str:
    return "-" if value is None else fmt.format(value)


def scenario_table(results: dict) -> str:
    head = (f"{'scenario':<22}{'rate/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'TTFB50':>9}"
            f"{'TTFB99':>9}{'err':>5}{'gw CPU%':>9}{'loop%':>7}{'gw us/rq':>9}{'cap/s':>7}{'gw RSS':>8}"
            f"{'load CPU%':>10}{'mock CPU%':>10}{'other%':>8}")
    lines = [head, "-" * len(head)]
    for s in results.get("scenarios", []):
        gw = s.get("gateway") or {}
        lines.append(
            f"{s['key']:<22}{s['rps']:>9,.0f}{_num(s['latency_ms']['p50']):>9}"
            f"{_num(s['latency_ms']['p99']):>9}{_num(s['ttfb_ms']['p50']):>9}"
            f"{_num(s['ttfb_ms']['p99']):>9}{s['errors_total']:>5}"
            f"{_num(gw.get('cpu_pct'), '{:.0f}'):>9}"
            f"{_num(gw.get('loop_thread_cpu_pct'), '{:.0f}'):>7}"
            f"{_num(gw.get('cpu_us_per_request'), '{:.0f}'):>9}"
            f"{_num(gw.get('capacity_per_core'), '{:,.0f}'):>7}"
            f"{_num(gw.get('rss_mb'), '{:.0f}'):>8}{_num(s['cpu']['pct'], '{:.0f}'):>10}"
            f"{_num(s.get('mock_cpu_pct'), '{:.0f}'):>10}"
            f"{_num(s.get('other_cpu_pct'), '{:.0f}'):>8}")
    return "\n".join(lines)


def targets_table(targets: list[dict]) -> str:
    width = max(len(t["target"]) for t in targets) + 2
    lines = [f"{'target':<{width}}{'measured':<58}verdict", "-" * (width + 65)]
    for t in targets:
        verdict = {True: "PASS", False: "MISS", None: "-"}[t["pass"]]
        lines.append(f"{t['target']:<{width}}{t['result']:<58}{verdict}")
    return "\n".join(lines)


def records_table(results: dict) -> str:
    lines = []
    for r in results.get("records", []):
        verdict = "PASS" if r["match"] else "MISS"
        lines.append(f"  {r['gateway']:<12} sent {r['sent']:>8,}  rows {r['rows']:>8,}  "
                     f"statuses {r['by_status']}  shutdown {r['shutdown_s']} s  {verdict}")
    return "\n".join(lines)


def render(results: dict) -> str:
    meta = results.get("meta", {})
    parts = [
        f"Circuit benchmark  {meta.get('date', '')}  commit {meta.get('commit', '?')}  "
        f"mode {meta.get('mode', '?')}  pinned {meta.get('pinned')}",
        f"  {meta.get('note', '')}",
        "",
        scenario_table(results),
        "",
        "  rate/s: requests or streams completed per second; latency: request written -> "
        "response complete;",
        "  TTFB: request written -> first body byte; gw us/rq: gateway CPU time per request; "
        "RSS in MB;",
        "  cap/s: 1e6 / gw us/rq, what one whole core would sustain (steadier than rate/s on a "
        "shared machine);",
        "  loop%: the gateway's event-loop thread alone (the rest is its record writer, log and "
        "executor threads);",
        "  other%: CPU the rest of the machine used meanwhile (noise); circuit-w1/w2: "
        "unpinned, 1 or 2 workers;",
        "  circuit-4k: a ~4,000-token prompt instead of a ~10-token one.",
    ]
    if hold := results.get("hold"):
        parts += ["", f"Open streams: {hold['streams']} slow streams "
                      f"({hold['stream_seconds']:.1f} s each), peak {hold['peak_open_streams']} "
                      f"open at once; gateway RSS idle {hold['idle_rss_mb']} MB, sampled peak "
                      f"{hold['sampled_peak_rss_mb']} MB, VmHWM {hold['peak_rss_mb']} MB; "
                      f"errors {hold['errors_total']}"]
    if results.get("records"):
        parts += ["", "Request records (rows in `requests` after SIGTERM vs chat requests sent):",
                  records_table(results)]
    if results.get("targets"):
        parts += ["", targets_table(results["targets"])]
    if (profile := results.get("profile")) and profile.get("top_own"):
        from bench_profile import format_split, format_table
        scope = "GIL holder only" if profile.get("gil_only") else "all busy threads"
        mode = profile.get("mode") or "json"
        door, _, wire = mode.rpartition("-")
        what = ("streams" if wire == "sse" else "JSON") + (f" on the {door} door" if door else "")
        parts += ["", f"Profile of the gateway at c=64 {what}, {scope}, "
                      f"{profile['rps_while_profiled']:,.0f}/s under py-spy "
                      f"({profile['file']}):",
                  format_table(profile, "top_own")]
        if profile.get("split"):
            parts.append(format_split(profile))
        if profile.get("threads"):
            total = sum(t["samples"] for t in profile["threads"]) or 1
            parts.append("  samples by thread: " + ", ".join(
                f"{t['thread'].split(': ', 1)[-1]} {100 * t['samples'] / total:.0f}%"
                for t in profile["threads"]))
    return "\n".join(parts)


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
