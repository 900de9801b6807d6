import numpy as np

from classifier.spec import InputSpec
from tests.helpers import make_dataset
from training.data import load_split, training_dataset


def test_training_dataset_serves_every_image_each_epoch_in_a_new_order(tmp_path):
    split = load_split(make_dataset(tmp_path, per_class=10, val_per_class=1) / "train",
                       InputSpec(32, 32), progress=False)  # fmt: skip
    data = training_dataset(split, batch_size=8, seed=1)
    epochs = []
    for _ in range(2):
        batches = list(data.as_numpy_iterator())
        assert [len(labels) for _, labels in batches] == [8, 8, 4]
        images = np.concatenate([b for b, _ in batches])
        assert images.dtype == np.uint8 and images.shape == (20, 32, 32, 3)
        epochs.append(images)
    order = [
        [int(np.flatnonzero((split.images == image).all(axis=(1, 2, 3)))[0]) for image in epoch]
        for epoch in epochs
    ]
    assert sorted(order[0]) == sorted(order[1]) == list(range(20))
    assert order[0] != order[1]
