"""The deployed path through compose, beside the direct one, in one run: docker-compose.yml as
users run it (nginx in front of the API replicas, compose's defaults: per-client limits off),
with 1 and then 3 replicas, on a real Docker engine started the way the container test
starts it (tests/containers: engine, base-image stand-ins where no registry answers, the
project's own compose project name and loopback ports). At each replica count: multipart
uploads of the photos at each concurrency through nginx, and straight to the first replica's
published port (the direct path, same container).

    python -m benchmarks.deployed --output runs/deployed.json
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from benchmarks.harness import answered, benchmark_parser, drive, host, write_results
from benchmarks.request_path import multipart_bodies


def run(replicas: list[int], files: list[Path], levels: list[int], seconds: float) -> dict:
    from tests.containers import standins
    from tests.containers.conftest import Compose
    from tests.containers.engine import Engine

    bodies, headers = multipart_bodies(files)
    rows = []
    with tempfile.TemporaryDirectory(prefix="deployed-") as scratch:
        engine = Engine(Path(scratch) / "docker-config")
        engine.install()
        engine.start()
        try:
            standins.ensure(engine)
            data = Path(scratch) / "data"
            data.mkdir()
            compose = Compose(engine, data)
            started = time.monotonic()
            compose("build", "api")
            print(f"serving image built in {time.monotonic() - started:.0f} s", flush=True)
            try:
                for count in replicas:
                    compose("up", "--detach", "--wait", "--scale", f"api={count}", timeout=600)
                    address = compose("port", "--index", "1", "api", "8000").stdout.strip()
                    direct = int(address.rsplit(":", 1)[1])
                    targets = [(f"compose, nginx + {count} replica(s)", compose.port)]
                    targets.append((f"direct to replica 1 of {count}", direct))
                    drive(compose.port, "/predict", bodies, 32, 10**7, 5, headers)  # warm up
                    for concurrency in levels:
                        for label, port in targets:
                            result = drive(
                                port, "/predict", bodies, concurrency, 10**7, seconds, headers
                            )
                            row = {"setup": label, **result.summary(), "statuses": result.statuses}
                            rows.append(row)
                            print(f"  {row}", flush=True)
                    compose.down()
            finally:
                compose.down()
        finally:
            engine.stop()
    return {"rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.deployed", __doc__)
    p.add_argument("--files", type=int, default=400, help="photos to send")
    p.add_argument("--replicas", default="1,3", help="replica counts, one stack each")
    p.add_argument("--concurrency", default="1,32", help="client connections, one step each")
    p.add_argument("--seconds", type=float, default=20, help="seconds per load step")
    p.add_argument("--output", type=Path, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    files = sorted(args.data_dir.rglob("*.jpg"))[: args.files]
    if not files:
        sys.exit(f"no JPEG under {args.data_dir}")
    machine = host()
    levels = [int(c) for c in args.concurrency.split(",")]
    result = run([int(n) for n in args.replicas.split(",")], files, levels, args.seconds)
    print("\n| setup | c | images/s | p50 ms | p99 ms | errors | answers |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for row in result["rows"]:
        print(
            f"| {row['setup']} | {row['concurrency']} | {row['images_per_s']} | "
            f"{row['p50_ms']} | {row['p99_ms']} | {row['errors']} | {row['statuses']} |"
        )
    write_results(args.output, {"host": machine, **result})
    steps = [
        (f"{r['setup']} c={r['concurrency']}", r["requests"], r["errors"]) for r in result["rows"]
    ]
    return answered(steps)


if __name__ == "__main__":
    sys.exit(main())
