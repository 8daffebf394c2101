"""Instructions per stream of the SSE relay's own work — decoding the upstream's bytes, reading
each event (the door's Transform), the tally and the output guard, framing — counted by
valgrind's callgrind, for one door's bench stream (scripts/bench_upstream.py, 20 text deltas).

    .venv/bin/python scripts/bench_relay.py                  every door, this tree
    .venv/bin/python scripts/bench_relay.py --door messages --tree /tmp/old

No event loop, no HTTP, no record: the count is (count of 2N streams - count of N) / N, so
start-up cancels out and the figure is that of the per-event code alone, the same every run.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOORS = ("chat", "messages", "responses")


def _body(pieces: list[bytes]) -> bytes:
    """The SSE bytes of a chunked HTTP answer's pieces."""
    whole = b"".join(pieces)
    rest, out = whole[whole.find(b"\r\n\r\n") + 4:], []
    while rest:
        line = rest.find(b"\r\n")
        size = int(rest[:line], 16)
        if size == 0:
            break
        out.append(rest[line + 2:line + 2 + size])
        rest = rest[line + 4 + size:]
    return b"".join(out)


def _pipeline(door: str):
    """One stream's relay work, as a function of no arguments."""
    sys.path.insert(0, str(HERE))
    import bench_upstream

    from circuit.accounting.output_guard import OutputGuard
    from circuit.accounting.stream_tally import StreamTally
    from circuit.gateway.doors import CHAT, MESSAGES, RESPONSES
    from circuit.providers.sse import SSEDecoder

    answers = bench_upstream.Answers(20)
    if door == "messages":
        from circuit.providers.anthropic_wire import MessagesReader
        data, frames = _body(answers.messages_stream), MESSAGES.frames
        reader, secret = MessagesReader(), "sk-ant-bench-upstream"
    elif door == "responses":
        from circuit.providers.responses_wire import ResponsesReader
        data, frames = _body(answers.responses_stream), RESPONSES.frames
        reader, secret = ResponsesReader("openai"), "sk-bench-upstream"
    else:
        from circuit.providers.openai_wire import OpenAIEvents
        data, frames = _body(answers.stream_usage), CHAT.frames
        reader, secret = None, "sk-bench-upstream"

    def one() -> bytes:
        transform = reader.transform(secret) if reader else OpenAIEvents(False, secret)
        tally = StreamTally(OutputGuard(20, len))
        events = []
        for event in SSEDecoder(1 << 20).feed(data):
            events.extend(transform.feed(event.data, event.event))
        out = frames(tally.observe(events))
        tally.guard.due()
        return out

    return one


def _count(tree: Path, door: str, streams: int) -> int:
    out = Path(tempfile.mkdtemp(prefix="circuit-relay-")) / "callgrind.out"
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0"}
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                    sys.executable, __file__, "--child", "--door", door,
                    "--streams", str(streams)], env=env, check=True, capture_output=True)
    total = 0
    for path in out.parent.glob(out.name + "*"):
        match = re.search(r"^totals: (\d+)", path.read_text(errors="replace"), re.MULTILINE)
        total += int(match.group(1)) if match else 0
    shutil.rmtree(out.parent, ignore_errors=True)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=HERE.parent,
                        help="the checkout whose circuit/ is measured (default: this one)")
    parser.add_argument("--door", choices=(*DOORS, "all"), default="all")
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        one = _pipeline(args.door)
        for _ in range(args.streams):
            one()
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is needed (apt install valgrind)")
    for door in DOORS if args.door == "all" else (args.door,):
        base = _count(args.tree, door, args.streams)
        double = _count(args.tree, door, 2 * args.streams)
        print(f"{door:10} {(double - base) / args.streams:>10,.0f} instructions per stream "
              f"({args.tree})", flush=True)


if __name__ == "__main__":
    main()
