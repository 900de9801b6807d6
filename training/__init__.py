"""Training: build the CNN, fit it on a folder of labelled images, publish a version.

Its command lines (`python -m training.<tool>`) need the training libraries, which the
serving install leaves out; run without them, they say what to install in one line and exit
with status 2 instead of failing on an import.
"""

import importlib.util
import sys

# What the `train` extra and TensorFlow (the `cpu` or `gpu` extra) bring.
NEEDED = ("tensorflow", "keras", "sklearn", "matplotlib", "tf2onnx", "onnx")


def missing_libraries() -> list[str]:
    return [name for name in NEEDED if importlib.util.find_spec(name) is None]


# `python -m training.x` imports this package first, with sys.argv[0] set to "-m" meanwhile.
if sys.argv[:1] == ["-m"] and (missing := missing_libraries()):
    print(
        f"error: training needs {', '.join(missing)}, not in this install (the serving one): "
        "run `make train-setup` in the checkout, or pip install the package with its `cpu` "
        "(or `gpu`) extra",
        file=sys.stderr,
    )
    sys.exit(2)
