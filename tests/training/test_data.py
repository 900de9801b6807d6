import numpy as np

from classifier.spec import InputSpec
from tests.helpers import make_dataset
from training.data import EpochBatches, epoch_order, load_split


def test_epoch_batches_serve_every_image_each_epoch_in_a_new_order(tmp_path):
    split = load_split(make_dataset(tmp_path, per_class=10, val_per_class=1) / "train",
                       InputSpec(32, 32), progress=False)  # fmt: skip
    data = EpochBatches(split, batch_size=8, seed=1)
    epochs = []
    for epoch in range(2):
        batches = list(data(epoch).as_numpy_iterator())
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


def test_an_epochs_order_depends_on_the_seed_and_the_epoch_alone():
    """What makes a resumed run see the batches an uninterrupted one would have."""
    assert (epoch_order(50, 7, 3) == epoch_order(50, 7, 3)).all()
    assert (epoch_order(50, 7, 3) != epoch_order(50, 7, 4)).any()
    assert (epoch_order(50, 8, 3) != epoch_order(50, 7, 3)).any()


def test_load_split_records_each_files_path_and_sha256(tmp_path):
    import hashlib

    root = make_dataset(tmp_path, per_class=3, val_per_class=1) / "train"
    split = load_split(root, InputSpec(32, 32), progress=False)
    assert split.where == f"{root.parent.name}/train"
    assert len(split.files) == len(split.labels) == 6
    for photo, label in zip(split.files, split.labels):
        assert photo.source == root.parent.name
        assert photo.path.split("/")[:2] == ["train", split.class_names[int(label)]]
        assert photo.sha256 == hashlib.sha256((root.parent / photo.path).read_bytes()).hexdigest()
