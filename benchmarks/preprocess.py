"""Time `decode_image` on real JPEGs with each JPEG draft gap, side by side in one run.

python -m benchmarks.preprocess --files 400
"""

from __future__ import annotations

import sys
import time

from benchmarks.harness import benchmark_parser, host
from classifier.preprocess import decode_image
from classifier.spec import InputSpec


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.preprocess", __doc__)
    p.add_argument("--files", type=int, default=400, help="how many JPEGs to decode")
    p.add_argument("--rounds", type=int, default=3, help="rounds; the best is reported")
    args = p.parse_args(argv)
    bodies = [f.read_bytes() for f in sorted(args.data_dir.rglob("*.jpg"))[: args.files]]
    if not bodies:
        sys.exit(f"no JPEG under {args.data_dir}")
    host()
    results = {}
    for _ in range(args.rounds):
        for gap in (0, 1, 2):  # interleaved, so drift on a shared machine hits each alike
            spec = InputSpec(jpeg_draft_gap=gap)
            started = time.perf_counter()
            for body in bodies:
                decode_image(body, spec)
            per_image = (time.perf_counter() - started) / len(bodies) * 1000
            results[gap] = min(results.get(gap, float("inf")), per_image)
    for gap, ms in results.items():
        print(f"jpeg_draft_gap {gap}: {ms:.2f} ms per image ({results[0] / ms:.2f}x gap 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
