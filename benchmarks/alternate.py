"""This checkout's service against another checkout's, in alternated load steps.

This host's speed moves by up to a quarter within minutes, so a change of a few percent is
lost between two runs minutes apart. Here both services are up at once (each idle while the
other is loaded) and the load goes to each in turn, ABBA, for `--rounds` rounds: server CPU
per image (its process tree, from /proc) and images/s, with their medians and the ratios
this / other. The other checkout runs on this one's interpreter and packages (from its own
folder, with PYTHONPATH), so only the code differs; both start with compare.sh's settings.
Two servers of the same code differed by up to 2.5% in one such run: read smaller ratios
as no change.

    git worktree add ../before <commit>
    python -m benchmarks.alternate --other ../before --rounds 4 --seconds 20
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from benchmarks.harness import (
    Server,
    answered,
    benchmark_parser,
    drive,
    host,
    positive,
    setting,
    write_results,
)
from benchmarks.request_path import COMPARE_ENV, measure, multipart_bodies


def medians(rows: list[dict]) -> dict:
    return {
        key: round(statistics.median(row[key] for row in rows), 3)
        for key in ("server_cpu_ms_per_image", "images_per_s")
    }


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.alternate", __doc__)
    p.add_argument("--other", type=Path, required=True, help="the other checkout's root")
    p.add_argument("--model-name", default="cats_vs_dogs")
    p.add_argument("--files", type=int, default=400, help="photos to send")
    p.add_argument("--concurrency", type=positive(int), default=32, help="client connections")
    p.add_argument("--seconds", type=positive(float), default=20, help="seconds per step")
    p.add_argument("--rounds", type=positive(int), default=4, help="ABBA rounds")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        type=setting,
        metavar="NAME=VALUE",
        help="a setting for both services over compare.sh's (repeatable), e.g. RUNTIME=onnx",
    )
    p.add_argument("--output", type=Path, help="write every figure to this JSON file")
    args = p.parse_args(argv)
    extra = dict(args.env)
    if not (args.other / "service").is_dir():
        sys.exit(f"not a checkout of this project: {args.other}")
    files = sorted(args.data_dir.rglob("*.jpg"))[: args.files]
    if not files:
        sys.exit(f"no JPEG under {args.data_dir}")
    found = host()
    bodies, headers = multipart_bodies(files)
    env = {**COMPARE_ENV, "MODEL_NAME": args.model_name, **extra}
    checkouts = {"this": Path(__file__).resolve().parents[1], "other": args.other.resolve()}
    rows: dict[str, list[dict]] = {name: [] for name in checkouts}
    servers: dict[str, Server] = {}
    try:
        for name, root in checkouts.items():
            # `python -m gunicorn` imports the app from its working folder first
            servers[name] = Server(args.models_dir.resolve(), cwd=root, PYTHONPATH=str(root), **env)
        for server in servers.values():
            server.wait_ready()
            drive(server.port, "/predict", bodies, args.concurrency, 10**7, 5, headers)  # warm
        for turn in range(args.rounds):
            for name in ("this", "other") if turn % 2 == 0 else ("other", "this"):
                row = measure(
                    servers[name], bodies, headers, args.concurrency, args.seconds, args.model_name
                )
                rows[name].append(row)
                print(f"round {turn + 1} {name}: {row}", flush=True)
    finally:
        for server in servers.values():
            server.stop()
    summary = {name: medians(found_rows) for name, found_rows in rows.items()}
    ratios = {
        key: round(summary["this"][key] / summary["other"][key], 3) for key in summary["this"]
    }
    print(f"\nthis checkout: {checkouts['this']}; other: {checkouts['other']}")
    print("| | this | other | this / other |\n|---|---:|---:|---:|")
    for key, ratio in ratios.items():
        print(f"| {key} (median) | {summary['this'][key]} | {summary['other'][key]} | {ratio} |")
    results = {"host": found, "env": extra, "rows": rows, "medians": summary, "ratios": ratios}
    write_results(args.output, results)
    return answered(
        [(f"{name} round {i + 1}", r["requests"], r["errors"]) for name in rows
         for i, r in enumerate(rows[name])]
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
