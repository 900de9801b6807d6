"""Time training epochs of the same model fed by different input pipelines, in one run.

python -m benchmarks.training_pipeline --data-dir ../shared/data/cats_vs_dogs/train

- keras: `keras.utils.image_dataset_from_directory` (reads and decodes every file every
  epoch), the plain Keras pipeline;
- cached: the product's pipeline (`training.data`): every file decoded once through
  `decode_image`, kept in memory, reshuffled each epoch; augmentation in the model (one
  RandomAffine warp);
- cached + keras layers: the same cached data with Keras's RandomFlip, RandomRotation and
  RandomZoom layers instead of RandomAffine (what the augmentation layer replaced).

Each variant builds a fresh model of the shipped recipe (augmentation, dropout 0.5, the given
precision), runs one untimed warm-up epoch (tracing) and then the timed epochs; the variants
take turns epoch by epoch, so drift on a shared machine hits each alike. The ratio compares
best epochs: on a shared machine an epoch is sometimes stalled to twice its time, which a
median of a few epochs does not remove.
"""

from __future__ import annotations

import statistics
import sys
import time

import keras
from keras import layers

from benchmarks.harness import REPO, benchmark_parser, host
from classifier.spec import DEFAULT_SPEC
from training.config import RECIPES, TrainConfig
from training.data import EpochBatches, load_split
from training.model import PRECISIONS, build_model, compile_model


def keras_layers_model(recipe: TrainConfig, precision: str) -> keras.Model:
    """The recipe's model with the three stock Keras augmentation layers in front."""
    seed = recipe.seed
    inner = build_model(DEFAULT_SPEC, dropout=recipe.dropout, seed=seed, precision=precision)
    inputs = keras.Input(shape=DEFAULT_SPEC.shape, name="image")
    x = layers.RandomFlip("horizontal", seed=seed, dtype="float32")(inputs)
    x = layers.RandomRotation(recipe.rotation, seed=seed, dtype="float32")(x)
    x = layers.RandomZoom(recipe.zoom, seed=seed, dtype="float32")(x)
    return keras.Model(inputs, inner(x))


def main(argv: list[str] | None = None) -> int:
    p = benchmark_parser("python -m benchmarks.training_pipeline", __doc__)
    p.set_defaults(data_dir=REPO.parent / "shared/data/cats_vs_dogs/train")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per variant")
    p.add_argument("--precision", choices=PRECISIONS, default="mixed_bfloat16", help="precision")
    p.add_argument("--seed", type=int, default=1337, help="random seed")
    args = p.parse_args(argv)
    if not args.data_dir.is_dir():
        sys.exit(f"no such folder: {args.data_dir}")
    host()
    recipe = TrainConfig(data_dir=args.data_dir, **RECIPES["shipped"] | {"seed": args.seed})
    keras.utils.set_random_seed(recipe.seed)

    started = time.perf_counter()
    split = load_split(args.data_dir, DEFAULT_SPEC, progress=False)
    decode_seconds = time.perf_counter() - started
    cached = EpochBatches(split, recipe.batch_size, recipe.seed)
    from_files = keras.utils.image_dataset_from_directory(
        args.data_dir,
        label_mode="binary",
        image_size=DEFAULT_SPEC.shape[:2],
        batch_size=recipe.batch_size,
        shuffle=True,
        seed=recipe.seed,
        verbose=False,
    ).prefetch(-1)

    def recipe_model() -> keras.Model:
        return build_model(
            DEFAULT_SPEC,
            augmentation=recipe.augment(),
            dropout=recipe.dropout,
            seed=recipe.seed,
            precision=args.precision,
        )

    variants = {
        "keras image_dataset_from_directory": (recipe_model(), lambda epoch: from_files),
        "cached (product)": (recipe_model(), cached),
        "cached + keras augmentation layers": (keras_layers_model(recipe, args.precision), cached),
    }
    for model, data in variants.values():
        compile_model(model, recipe.learning_rate, recipe.optimizer, recipe.weight_decay)
        model.fit(
            data(0), epochs=1, verbose=0, shuffle=False
        )  # warm-up: tracing, thread pools, page cache
    times: dict[str, list[float]] = {name: [] for name in variants}
    for epoch in range(args.epochs):
        for name, (model, data) in variants.items():
            t = time.perf_counter()
            model.fit(data(epoch + 1), epochs=1, verbose=0, shuffle=False)
            times[name].append(time.perf_counter() - t)
            print(f"epoch {epoch + 1} {name}: {times[name][-1]:.2f} s", file=sys.stderr)

    # The best epoch is the pipeline's own cost; the median also shows how often this shared
    # machine stalled it.
    base = min(times["keras image_dataset_from_directory"])
    print(
        f"{len(split.labels)} training images, batch {recipe.batch_size}, "
        f"precision {args.precision}"
    )
    print(f"one-time decode of the cached pipeline: {decode_seconds:.2f} s")
    print("| pipeline | best epoch s | median epoch s | epochs | best vs keras pipeline |")
    print("|---|---:|---:|---|---:|")
    for name, values in times.items():
        shown = ", ".join(f"{v:.1f}" for v in values)
        print(
            f"| {name} | {min(values):.2f} | {statistics.median(values):.2f} | {shown} "
            f"| {base / min(values):.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
