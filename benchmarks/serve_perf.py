"""`make bench-serve`: Triton's perf_analyzer against ``bninception serve`` over HTTP and gRPC, beside
in-process ONNX Runtime on the same file, in one run.

Server settings compared: the default (a free model takes what is queued, requests arriving while it
runs form the next batch), ``--max-delay-ms 5`` (the oldest request may wait 5 ms for company: the
old default) and ``--no-batching``. Each server is its own process on 127.0.0.1 with
``--threads 1``; perf_analyzer 2.60 (docker/harness.py: a trixie container, ``--network host``) sends
one image per request with its default random data, at concurrency 1, 4 and 16, in time windows
until three are within 10% (25% with wider windows on a busy host). In-process: the same ONNX file
through OrtRunner, one thread, batch 1 (latency) and batch 4 / 16 (the throughput a perfect batcher
could reach). With ``--baseline REV`` the server of git revision REV (a worktree, run from its own
sources in this environment) is measured too, over HTTP with the default setting, beside this one.
Bounded: about 3-4 minutes (5 with a baseline).

    .venv/bin/python benchmarks/serve_perf.py [--model runs/demo/model.folded.onnx] [--json OUT] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "docker"))
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

import harness  # noqa: E402

from bninception.evaluate.tables import render  # noqa: E402

SETTINGS = {"default": [], "max-delay 5 ms": ["--max-delay-ms", "5"], "no batching": ["--no-batching"]}
CONCURRENCY = (1, 4, 16)


# runs ``bninception`` from the checkout in sys.argv[1], not from the installed (editable) package
FROM_CHECKOUT = ("import sys; root = sys.argv.pop(1); sys.path.insert(0, root); "
                 "sys.meta_path[:] = [f for f in sys.meta_path if 'Editable' not in repr(f)]; "
                 "from bninception.cli import main; raise SystemExit(main())")


def start_server(model: Path, extra: list[str], checkout: Path | None = None
                 ) -> tuple[subprocess.Popen[str], int, int]:
    from serve_helpers import free_port, start_cli_server

    grpc = free_port()
    command = (sys.executable, "-c", FROM_CHECKOUT, str(checkout)) if checkout else (sys.executable, "-m",
                                                                                    "bninception")
    process, http = start_cli_server(model, "--grpc-port", str(grpc), "--threads", "1", *extra, command=command)
    return process, http, grpc


def measure_server(model: Path, setting: str, extra: list[str], protocols: tuple[str, ...],
                   checkout: Path | None = None) -> list[dict[str, Any]]:
    rows = []
    process, http, grpc = start_server(model, extra, checkout)
    try:
        for protocol in protocols:
            port = http if protocol == "http" else grpc
            for concurrency in CONCURRENCY:
                row = measure(f"127.0.0.1:{port}", protocol, concurrency)
                rows.append({"mode": protocol, "setting": setting, "concurrency": concurrency,
                             "throughput": row.throughput, "latency_us": row.latency_us})
                print(f"  {protocol:4} {setting:15} c{concurrency:<3} {row.throughput:9.0f} img/s "
                      f"{row.latency_us / 1000:7.2f} ms", file=sys.stderr, flush=True)
    finally:
        process.terminate()
        process.wait(30)
    return rows


def baseline_rows(model: Path, revision: str) -> list[dict[str, Any]]:
    """HTTP rows of the default server at git ``revision`` (a temporary worktree)."""
    with tempfile.TemporaryDirectory(prefix="bninception-baseline-") as tmp:
        checkout = Path(tmp) / "checkout"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(checkout), revision], check=True,
                       capture_output=True, timeout=120)
        try:
            return measure_server(model, f"{revision[:7]} default", [], ("http",), checkout)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(checkout)], check=False,
                           capture_output=True, timeout=120)


def measure(url: str, protocol: str, concurrency: int) -> harness.PerfRow:
    """perf_analyzer's row for one concurrency; a busier host gets wider windows before it gives up."""
    for interval, stability in (("1500", "10"), ("3000", "25")):
        try:
            rows, _ = harness.perf_analyzer(url, protocol, "--measurement-interval", interval, "--stability-percentage",
                                            stability, "--max-trials", "8", "--concurrency-range", str(concurrency))
            return rows[-1]
        except harness.HarnessError as exc:
            error = exc
    raise error


def in_process(model: Path) -> list[dict[str, Any]]:
    import functools

    import numpy as np

    from bninception.core.runner import OrtRunner
    from bninception.evaluate.bench import BenchSettings, time_calls

    runner = OrtRunner(str(model), threads=1)
    shape = runner.input_spec
    settings = BenchSettings(min_seconds=2.0, max_seconds=2.0, warmup_seconds=0.0, min_reps=1, max_reps=1 << 30)
    rows = []
    for batch in CONCURRENCY:
        x = np.random.default_rng(0).standard_normal((batch, shape.channels, shape.height, shape.width))
        seconds = float(np.mean(time_calls(functools.partial(runner.run, x.astype(np.float32)), settings)[0]))
        rows.append({"mode": "in-process", "setting": f"batch {batch}", "concurrency": batch,
                     "throughput": batch / seconds, "latency_us": seconds * 1e6})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="an ONNX classifier (default: the demo network, exported here)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    parser.add_argument("--baseline", metavar="REV", help="also measure the HTTP server of this git revision")
    args = parser.parse_args(argv)
    problem = harness.ensure_engine()
    if problem is not None:
        raise SystemExit(f"perf_analyzer runs in Docker: {problem}")
    harness.perf_analyzer_image()
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            model = Path(args.model)
        else:
            from serve_helpers import export_classifier

            model = export_classifier(Path(tmp) / "model.onnx")
        rows = in_process(model)
        if args.baseline:
            rows += baseline_rows(model, args.baseline)
        for setting, extra in SETTINGS.items():
            rows += measure_server(model, setting, extra, ("http", "grpc"))
    print("\n".join(render(["mode", "setting", "conc.", "img/s", "latency ms"], [
        [r["mode"], r["setting"], r["concurrency"], f"{r['throughput']:.0f}", f"{r['latency_us'] / 1000:.2f}"]
        for r in rows])))
    by = {(r["mode"], r["setting"], r["concurrency"]): r for r in rows}
    for protocol in ("http", "grpc"):
        lone = by[(protocol, "default", 1)]["latency_us"] / by[(protocol, "no batching", 1)]["latency_us"]
        busy = by[(protocol, "default", 16)]["throughput"] / by[(protocol, "max-delay 5 ms", 16)]["throughput"]
        print(f"{protocol}: concurrency 1 latency, default / no batching = {lone:.2f}x (target <= 1.2x); "
              f"concurrency 16 throughput, default / max-delay 5 ms = {busy:.2f}x (target >= 1x)")
    if args.baseline:
        for concurrency in (1, 16):
            ours, theirs = by[("http", "default", concurrency)], by[("http", f"{args.baseline[:7]} default",
                                                                     concurrency)]
            print(f"http c{concurrency}: this server / {args.baseline[:7]} = "
                  f"{ours['throughput'] / theirs['throughput']:.2f}x throughput, "
                  f"{ours['latency_us'] / theirs['latency_us']:.2f}x latency (c16 throughput target >= 0.9x)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
