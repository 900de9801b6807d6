"""Soak: steady concurrent load on real photos for a bounded time, sampling the server's memory.

Each window sends a fixed number of requests to 127.0.0.1, then records the resident memory
of the gunicorn master and workers, the window's error count and its p99 latency. The run
stops by itself after --seconds.

    python -m benchmarks.soak --seconds 600 --plot docs/soak.png
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from benchmarks.harness import (
    EXIT_NOTHING_ANSWERED,
    Server,
    answered,
    benchmark_parser,
    drive,
    host,
    positive,
    write_results,
)


def process_tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, from /proc (Linux)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


def plot(samples: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    t = [s["t"] for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
    axes[0].plot(t, [s["rss_mb"] for s in samples], "-o", markersize=2)
    axes[0].set_ylabel("RSS (MB)")
    axes[1].plot(t, [s["p99_ms"] for s in samples], "-o", markersize=2, color="tab:orange")
    axes[1].set_ylabel("p99 (ms)")
    axes[2].plot(t, [s["errors"] for s in samples], "-o", markersize=2, color="tab:red")
    axes[2].set_ylabel("errors")
    axes[2].set_xlabel("seconds")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle("soak: steady load on real photos")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.soak", __doc__)
    p.add_argument("--seconds", type=positive(float), default=600, help="how long to run")
    p.add_argument("--concurrency", type=positive(int), default=32, help="concurrent clients")
    p.add_argument("--window", type=positive(int), default=500, help="requests between samples")
    p.add_argument("--plot", type=Path, help="write a PNG of memory, p99 and errors")
    p.add_argument("--output", type=Path, help="write the host and the samples as JSON")
    args = p.parse_args(argv)

    bodies = [f.read_bytes() for f in sorted(args.data_dir.rglob("*.jpg"))]
    if not bodies:
        sys.exit(f"no JPEG under {args.data_dir}")
    machine = host()
    samples = []
    with Server(args.models_dir, GUNICORN_THREADS="64") as server:
        server.wait_ready()
        started = time.monotonic()
        while time.monotonic() - started < args.seconds:
            remaining = args.seconds - (time.monotonic() - started)
            result = drive(
                server.port, "/predict", bodies, args.concurrency, args.window, remaining
            )
            if result.requests == 0:  # the time ran out before the window's first request
                break
            sample = {
                "t": round(time.monotonic() - started, 1),
                "rss_mb": round(process_tree_rss_mb(server.process.pid), 1),
                "images_per_s": round(result.rate, 1),
                "p99_ms": round(result.percentile(99), 1),
                "requests": result.requests,
                "errors": result.errors,
            }
            samples.append(sample)
            print(sample, flush=True)
    if not samples:
        print(f"no request was sent in {args.seconds} s", file=sys.stderr)
        return EXIT_NOTHING_ANSWERED
    first, last = samples[0], samples[-1]
    print(
        f"RSS {first['rss_mb']} -> {last['rss_mb']} MB over {last['t']} s; "
        f"errors {sum(s['errors'] for s in samples)}; "
        f"p99 first {first['p99_ms']} ms, last {last['p99_ms']} ms"
    )
    if args.plot:
        plot(samples, args.plot)
    write_results(args.output, {"host": machine, "samples": samples})
    return answered([(f"t={s['t']} s", s["requests"], s["errors"]) for s in samples])


if __name__ == "__main__":
    sys.exit(main())
