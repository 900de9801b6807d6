"""The training-pipeline benchmark runs end to end (on a tiny dataset: speed is not tested)."""

from benchmarks import training_pipeline
from tests.helpers import make_dataset


def test_training_pipeline_benchmark_times_every_variant(tmp_path, capsys):
    data = make_dataset(tmp_path, per_class=8, val_per_class=1) / "train"
    assert training_pipeline.main(["--data-dir", str(data), "--epochs", "1"]) == 0
    out = capsys.readouterr().out
    assert "16 training images" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "x |" in line]
    assert len(rows) == 3 and "1.00x" in rows[0]
