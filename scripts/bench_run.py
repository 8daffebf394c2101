"""Circuit's benchmark: the gateway against a fast mock upstream, with real accounting on.

Scenarios, each after a warm-up, direct to the mock (the zero-overhead limit) and through Circuit:
non-streaming at c=1 and c=64, streaming (20 chunks) at c=64, a small concurrency sweep for the
plot, the Messages door passed through to the mock as an Anthropic upstream and the Responses
door passed through to it as OpenAI (JSON and SSE, c=64); then `--workers 2` unpinned, and
1,000 slow streams held open for peak RSS. Every gateway runs with auth, its budget and its
request records on (SQLite on disk, fresh tmp dir); after SIGTERM the rows in `requests` are
counted against the requests sent.

The gateway runs on core 0 (`taskset -c 0`); the mock, the load generator, py-spy and this script
on core 1. Results: a table on stdout, bench-results/latest.json, bench-results/latency.png.
Use scripts/bench, which installs what this needs; run `scripts/bench --help` for options.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import bench_procs as procs
from bench_plot import plot
from bench_profile import record, summarise
from bench_report import evaluate, key, render, write_json

BENCH_KEY = "sk-bench-circuit-0123456789"
PLANS = {
    # warm-up s, measured s, sweep concurrencies, sweep s, held streams, stream chunk interval
    # ms, words in the large-prompt scenario
    "full": dict(warmup=2.0, duration=10.0, sweep=(4, 16, 128, 256), sweep_duration=2.0,
                 streams=1000, interval_ms=250.0, workers2=True, hold=True, big_prompt=2000),
    "quick": dict(warmup=0.5, duration=1.2, sweep=(), sweep_duration=0.0,
                  streams=1000, interval_ms=80.0, workers2=True, hold=True, big_prompt=0),
    "smoke": dict(warmup=0.3, duration=1.0, sweep=(), sweep_duration=0.0,
                  streams=0, interval_ms=0.0, workers2=False, hold=False, big_prompt=0),
}


class Bench:
    def __init__(self, args: argparse.Namespace, plan: dict, workdir: Path) -> None:
        self.args, self.plan, self.workdir = args, plan, workdir
        self.pin = procs.can_pin() and not args.no_pin
        self.gw_core = procs.GATEWAY_CORE if self.pin else None
        self.load_core = procs.LOAD_CORE if self.pin else None
        self.extra_env = dict(item.split("=", 1) for item in args.gateway_env)
        self.results: dict = {"meta": self._meta(), "scenarios": [], "records": []}
        self.started: list = []  # every process to stop on the way out

    def _meta(self) -> dict:
        try:
            commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=procs.ROOT,
                                    capture_output=True, text=True).stdout.strip()
        except OSError:
            commit = ""
        cpu = next((line.split(":", 1)[1].strip() for line in
                    Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), platform.processor())
        return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": commit,
                "mode": self.args.mode, "python": platform.python_version(), "cpu": cpu,
                "cores": os.cpu_count(), "pinned": self.pin,
                "prompt_words": self.args.prompt_words, "plan": {k: v for k, v in self.plan.items()},
                "note": ("gateway: `circuit serve`, PROVIDER=openai to the mock; auth "
                         "(CIRCUIT_API_KEYS), budget 1e6 USD/day, rate limits 1e9 rpm / 1e12 "
                         "tpm, breaker, request rows to SQLite on disk; extra env "
                         f"{sorted(self.extra_env) or 'none'}")}

    # -- pieces --------------------------------------------------------------------------------

    def mock(self, **kw) -> procs.Mock:
        mock = procs.Mock(core=self.load_core, **kw)
        self.started.append(mock)
        return mock

    def gateway(self, name: str, mock: procs.Mock, workers: int = 1,
                pin: bool = True) -> procs.Gateway:
        gw = procs.Gateway(self.workdir / name, mock.base_url, BENCH_KEY, workers=workers,
                           core=self.gw_core if pin else None, extra_env=self.extra_env)
        self.started.append(gw)
        gw.wait_ready()
        say(f"gateway {name}: ready in {gw.startup_s} s, pid {gw.pid}, workers {workers}, "
            f"pinned {pin and self.pin}, {gw.memory_mb()['rss_mb']} MB")
        return gw

    def bare(self, mock: procs.Mock) -> procs.BareRelay:
        relay = procs.BareRelay(self.workdir / "bare", f"http://127.0.0.1:{mock.port}",
                                core=self.gw_core)
        self.started.append(relay)
        relay.wait_ready()
        say(f"bare relay: ready in {relay.startup_s} s, pid {relay.pid}, "
            f"{relay.memory_mb()['rss_mb']} MB")
        return relay

    def finish(self, gw: procs.Gateway) -> dict:
        gw.stop()
        rows = {"gateway": gw.name, **gw.count_rows()}
        self.results["records"].append(rows)
        say(f"gateway {gw.name}: stopped in {gw.shutdown_s} s; sent {rows['sent']}, "
            f"rows {rows['rows']} ({'match' if rows['match'] else 'MISMATCH'})")
        return rows

    def load(self, target: str, mode: str, concurrency: int, url: str, *,
             gw: procs.Gateway | None, mock: procs.Mock, warmup: float, duration: float,
             keep: bool = True, during=None, prompt_words: int | None = None,
             path: str = "/v1/chat/completions", model: str | None = None) -> dict:
        """One scenario, with the gateway's and the mock's CPU sampled over the window."""
        snaps: dict[str, tuple] = {}

        def snap(tag: str) -> None:
            pids = gw.pids() if gw else []
            snaps[tag] = (time.perf_counter(), procs.cpu_seconds(pids),
                          procs.cpu_seconds([mock.pid]), procs.machine_busy_seconds(),
                          procs.thread_cpu_seconds(gw.pid) if gw and gw.workers == 1 else {})
            if tag == "start" and during is not None:
                during()

        r = procs.run_load(url + path, concurrency=concurrency, model=model,
                           duration=duration, warmup=warmup, stream=mode == "sse",
                           key=BENCH_KEY if gw else None, core=self.load_core,
                           prompt_words=self.args.prompt_words if prompt_words is None
                           else prompt_words,
                           on_start=lambda: snap("start"), on_end=lambda: snap("end"))
        (t0, g0, m0, b0, th0), (t1, g1, m1, b1, th1) = snaps["start"], snaps["end"]
        wall = t1 - t0
        mock_cpu = sum(m1[p] - m0.get(p, 0) for p in m1)
        per = {p: g1[p] - g0.get(p, 0.0) for p in g1}
        cpu = sum(per.values())
        # What else kept the machine busy meanwhile (other people's work skews the numbers).
        other = (b1 - b0) - cpu - mock_cpu - r["cpu"]["window_s"]
        r.update(key=key(target, mode, concurrency), target=target, mode=mode,
                 mock_cpu_pct=round(100 * mock_cpu / wall, 1),
                 other_cpu_pct=round(max(0.0, 100 * other / wall), 1))
        if gw is not None:
            gw.sent += r["sent_total"]
            r["gateway"] = {
                "cpu_pct": round(100 * cpu / wall, 1),
                "cpu_us_per_request": round(cpu / r["requests"] * 1e6, 1) if r["requests"]
                else None,
                "capacity_per_core": round(r["requests"] / cpu) if cpu and r["requests"]
                else None,
                "cpu_pct_per_process": [round(100 * v / wall, 1) for v in per.values()],
                **gw.memory_mb()}
            if th1:
                # The event loop's thread against the rest (record writer, log, executor).
                loop = th1.get(gw.pid, 0.0) - th0.get(gw.pid, 0.0)
                rest = sum(v - th0.get(t, 0.0) for t, v in th1.items() if t != gw.pid)
                r["gateway"].update(loop_thread_cpu_pct=round(100 * loop / wall, 1),
                                    other_threads_cpu_pct=round(100 * rest / wall, 1))
        if keep:
            self.results["scenarios"].append(r)
        gws = r.get("gateway", {})
        say(f"  {r['key']:<20} {r['rps']:>9,.0f}/s  p50 {r['latency_ms']['p50'] or 0:.3f} ms  "
            f"p99 {r['latency_ms']['p99'] or 0:.3f} ms  ttfb50 {r['ttfb_ms']['p50'] or 0:.3f}  "
            f"err {r['errors_total']}  gw cpu {gws.get('cpu_pct', '-')}% "
            f"(loop {gws.get('loop_thread_cpu_pct', '-')}%)  "
            f"load cpu {r['cpu']['pct']}%  mock cpu {r['mock_cpu_pct']}%  "
            f"other cpu {r['other_cpu_pct']}%")
        return r

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> dict:
        plan, args = self.plan, self.args
        warmup = args.warmup if args.warmup is not None else plan["warmup"]
        duration = args.duration if args.duration is not None else plan["duration"]
        basic = ((1, "json"), (64, "json"), (1, "sse"), (64, "sse")) if args.mode != "smoke" \
            else ((4, "json"), (4, "sse"))
        sweep = [(c, "json") for c in plan["sweep"]]
        sweep_duration = plan["sweep_duration"] or duration
        sweep_warmup = min(warmup, 0.5)

        mock = self.mock(chunks=args.chunks)
        say(f"mock upstream on port {mock.port}; gateway core {self.gw_core}, "
            f"load core {self.load_core}")
        direct = f"http://127.0.0.1:{mock.port}"
        for c, mode in basic:
            self.load("direct", mode, c, direct, gw=None, mock=mock, warmup=warmup,
                      duration=duration)
        for c, mode in sweep:
            self.load("direct", mode, c, direct, gw=None, mock=mock, warmup=sweep_warmup,
                      duration=sweep_duration)

        gw = self.gateway("main", mock)
        bare = None if args.no_bare else self.bare(mock)
        # The Messages door passed through to an Anthropic upstream and the Responses door to
        # an OpenAI one, on the mock: each to cost no more per request than chat completions.
        doors = (("messages", "/v1/messages", procs.MESSAGES_MODEL),
                 ("responses", "/v1/responses", None))
        door_scenarios = ((64, "json"), (64, "sse")) if args.mode != "smoke" else ((4, "sse"),)
        # Scenario by scenario, the bare relay then Circuit, both on the gateway's core: a
        # machine that gets busier during the run skews both sides of each ratio alike.
        paired = [("", c, mode, "/v1/chat/completions", None) for c, mode in basic]
        paired += [(f"-{door}", c, mode, path, model) for door, path, model in doors
                   for c, mode in door_scenarios]
        for suffix, c, mode, path, model in paired:
            if bare is not None:
                self.load(f"bare{suffix}", mode, c, bare.url, gw=bare, mock=mock,
                          warmup=warmup, duration=duration, path=path, model=model)
            self.load(f"circuit{suffix}", mode, c, gw.url, gw=gw, mock=mock, warmup=warmup,
                      duration=duration, path=path, model=model)
        if bare is not None:
            bare.stop()
        for c, mode in sweep:
            self.load("circuit", mode, c, gw.url, gw=gw, mock=mock, warmup=sweep_warmup,
                      duration=sweep_duration)
        if plan["big_prompt"] and not args.prompt_words:
            # A ~4,000-token prompt: costs that grow with the prompt (token counting).
            self.load("circuit-4k", "json", 64, gw.url, gw=gw, mock=mock, warmup=sweep_warmup,
                      duration=sweep_duration, prompt_words=plan["big_prompt"])
        if args.profile:
            self.profile(gw, mock, warmup, duration)
        self.finish(gw)

        if plan["workers2"] and not args.skip_workers:
            # Scaling: both unpinned (the load side stays on its core), so one worker may
            # float across cores just as two do.
            for workers in (1, 2):
                gw_n = self.gateway(f"workers{workers}", mock, workers=workers, pin=False)
                self.load(f"circuit-w{workers}", "json", 64, gw_n.url, gw=gw_n, mock=mock,
                          warmup=warmup, duration=duration)
                self.finish(gw_n)

        if plan["hold"] and not args.skip_hold:
            self.hold(plan["streams"], plan["interval_ms"], args.chunks)

        self.results["targets"] = evaluate(self.results)
        return self.results

    def profile(self, gw: procs.Gateway, mock: procs.Mock, warmup: float,
                duration: float) -> None:
        mode = self.args.profile
        out = procs.ROOT / "bench-results" / f"profile-c64-{mode}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        errors: list[Exception] = []

        def sample() -> None:
            try:
                record(gw.pid, duration, out, native=self.args.native, gil=self.args.gil,
                       core=self.load_core)
            except Exception as exc:  # reported, not fatal: the numbers stand without it
                errors.append(exc)

        thread = threading.Thread(target=sample)
        door, _, wire_mode = mode.rpartition("-")
        path, model = {"": ("/v1/chat/completions", None),
                       "messages": ("/v1/messages", procs.MESSAGES_MODEL),
                       "responses": ("/v1/responses", None)}[door]
        r = self.load("circuit" + (f"-{door}" if door else ""), wire_mode, 64, gw.url, gw=gw,
                      mock=mock, warmup=warmup, duration=duration + 1, keep=False,
                      during=thread.start, path=path, model=model)
        thread.join()
        if errors or not out.exists():
            say(f"profile failed: {errors[0] if errors else 'no output'}")
            return
        summary = summarise(out, 15)
        summary.update(file=str(out.relative_to(procs.ROOT)), rps_while_profiled=r["rps"],
                       gil_only=self.args.gil, mode=mode)
        self.results["profile"] = summary

    def hold(self, streams: int, interval_ms: float, chunks: int) -> None:
        """Peak RSS of a fresh gateway holding `streams` slow streams open at once."""
        slow = self.mock(chunks=chunks, chunk_interval_ms=interval_ms)
        gw = self.gateway("hold", slow)
        idle = gw.memory_mb()["rss_mb"]
        stream_seconds = (chunks + 1) * interval_ms / 1000
        with procs.RssSampler(gw.pid) as sampler:
            r = procs.run_load(gw.url + "/v1/chat/completions", concurrency=streams,
                               duration=stream_seconds * 4 + 20, warmup=0, stream=True,
                               key=BENCH_KEY, max_requests=streams, core=self.load_core,
                               drain_timeout=60)
        gw.sent += r["sent_total"]
        mem = gw.memory_mb()
        self.results["hold"] = {
            "streams": streams, "stream_seconds": stream_seconds,
            "peak_open_streams": r["peak_open_streams"], "errors_total": r["errors_total"],
            "error_kinds": r["error_kinds"], "idle_rss_mb": idle,
            "sampled_peak_rss_mb": round(sampler.peak_kb / 1024, 1),
            "peak_rss_mb": mem["peak_rss_mb"],
            "rss_per_stream_kb": round((mem["peak_rss_mb"] - idle) * 1024 / streams, 1),
            "ttfb_ms": r["ttfb_ms"], "load_cpu": r["cpu"]}
        say(f"  hold: {r['peak_open_streams']}/{streams} open at once, peak RSS "
            f"{mem['peak_rss_mb']} MB (idle {idle} MB), errors {r['errors_total']}")
        self.finish(gw)

    def close(self) -> None:
        for proc in reversed(self.started):
            proc.stop()


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description="Benchmark Circuit against a fast mock upstream.")
    parser.add_argument("--quick", dest="mode", action="store_const", const="quick",
                        default="full", help="short scenarios, no sweep (< 40 s)")
    parser.add_argument("--smoke", dest="mode", action="store_const", const="smoke",
                        help="a tiny end-to-end check (used by the tests)")
    parser.add_argument("--duration", type=float, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, help="warm-up seconds per scenario")
    parser.add_argument("--chunks", type=int, default=20, help="events per stream")
    parser.add_argument("--prompt-words", type=int, default=0,
                        help="a longer prompt: this many words (~tokens) more in each request")
    parser.add_argument("--profile", nargs="?", const="json",
                        choices=("json", "sse", "messages-json", "messages-sse",
                                 "responses-json", "responses-sse"),
                        help="also profile the gateway at c=64 with py-spy (chat JSON requests; "
                             "or --profile sse, messages-sse, responses-json, ...)")
    parser.add_argument("--native", action="store_true", help="py-spy: include C frames")
    parser.add_argument("--gil", action="store_true",
                        help="py-spy: only samples of the thread holding the GIL")
    parser.add_argument("--no-bare", action="store_true",
                        help="skip the bare relay (scripts/bench_bare.py) Circuit is judged against")
    parser.add_argument("--skip-workers", action="store_true", help="no --workers 2 run")
    parser.add_argument("--skip-hold", action="store_true", help="no 1,000 open streams run")
    parser.add_argument("--no-pin", action="store_true", help="do not use taskset")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument("--gateway-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the gateway (repeatable)")
    parser.add_argument("--out", type=Path, default=procs.ROOT / "bench-results" / "latest.json")
    parser.add_argument("--keep", action="store_true", help="keep the tmp dir (db, logs)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--wait-quiet", type=float, default=None, metavar="SECONDS",
                        help="wait up to this long for an idle machine first "
                             "(default 15; 0 with --quick or --smoke)")
    args = parser.parse_args(argv)
    if procs.can_pin() and not args.no_pin:
        os.sched_setaffinity(0, {procs.LOAD_CORE})
    wait = args.wait_quiet if args.wait_quiet is not None else \
        {"smoke": 0, "quick": 0}.get(args.mode, 15)
    # Always look (1 s) at how busy the machine is; wait for it to calm down only if asked.
    busy = procs.wait_for_quiet(wait) if args.mode != "smoke" else None
    if busy is not None and busy >= 15:
        say(f"warning: the machine is {busy}% busy with other work; the numbers will be low "
            "(see the other% column)")
    workdir = Path(tempfile.mkdtemp(prefix="circuit-bench-"))
    bench = Bench(args, PLANS[args.mode], workdir)
    bench.results["meta"]["busy_before_pct"] = busy
    started = time.perf_counter()
    try:
        results = bench.run()
    finally:
        bench.close()
        if args.keep:
            say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["wall_s"] = round(time.perf_counter() - started, 1)
    if args.mode != "smoke" and not args.no_plot:
        png = plot(results, args.out.with_name("latency.png"))
        results["plot"] = str(png) if png else None
    write_json(results, args.out)
    print(render(results))
    print(f"\nwrote {args.out}" + (f" and {results['plot']}" if results.get("plot") else "")
          + f" in {results['meta']['wall_s']} s")
    records_ok = all(r["match"] for r in results["records"])
    missed = any(t["pass"] is False for t in results["targets"] if t["name"] != "records")
    return 1 if not records_ok or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
