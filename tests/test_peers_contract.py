"""What ../shared/peers imports from this project keeps working (compare.sh's correctness check)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from classifier.runtimes import OnnxRuntime
from classifier.spec import InputSpec
from tests.helpers import REPO, SHIPPED_MODELS

PEERS = REPO.parent / "shared" / "peers"


def test_the_names_the_peers_tool_imports_exist():
    data = json.loads((SHIPPED_MODELS / "cats_vs_dogs" / "1" / "metadata.json").read_text())
    spec = InputSpec.from_dict(data["input"])
    assert spec.jpeg_draft_gap == 2
    runtime = OnnxRuntime(SHIPPED_MODELS / "cats_vs_dogs" / "3" / "model.onnx", 1)
    assert runtime(np.zeros((3, *spec.shape), np.uint8)).shape == (3,)  # P(dogs) per photo


@pytest.mark.shared_data
def test_the_peers_preprocessing_check_passes(shared_data):
    if not (PEERS / "check_preprocess.py").is_file():
        pytest.skip("../shared/peers is not here")
    result = subprocess.run(
        [sys.executable, str(PEERS / "check_preprocess.py"), "--limit", "10"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 pixel mismatches" in result.stdout
