"""Building the full training folder from a git snapshot: the numbers taken, duplicates and
validation copies left out, and the reserved numbers never read."""

import io
import json
import subprocess
from pathlib import Path

import numpy as np
from PIL import Image

from training import kaggle_data


def photo(seed: int, size: tuple[int, int] = (120, 90)) -> bytes:
    """A photo-like picture (smooth blobs): its thumbnail survives resizing."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    image = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def resized(data: bytes, size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).resize(size).save(out, format="JPEG", quality=80)
    return out.getvalue()


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def snapshot(tmp_path: Path, validation: Path) -> Path:
    repo = tmp_path / "snapshot"
    (repo / "train").mkdir(parents=True)
    files = {
        "cat.0.jpg": photo(0),
        "cat.1.jpg": photo(0),  # the same bytes as cat.0: left out
        "cat.2.jpg": photo(2),
        "cat.02.jpg": photo(22),  # not a Kaggle name (no leading zeros): was also cat.2.jpg
        "dog.3.jpg": resized((validation / "dogs" / "dog.4001.jpg").read_bytes(), (200, 200)),
        "dog.4.jpg": photo(4),
        "dog.5001.jpg": photo(5001),
        "cat.4001.jpg": photo(4001),  # a validation number: never taken from the snapshot
        "cat.4600.jpg": photo(4600),  # reserved for independent evaluation: never read
        "dog.12500.jpg": photo(12500),  # past the set
    }
    for name, data in files.items():
        (repo / "train" / name).write_bytes(data)
    (repo / "README.md").write_text("not a photo\n")
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "photos")
    # Make the reserved photo unreadable: reading it would fail the build.
    reserved = git(repo, "rev-parse", "HEAD:train/cat.4600.jpg").strip()
    (repo / ".git" / "objects" / reserved[:2] / reserved[2:]).unlink()
    return repo / ".git"


def test_the_build_takes_the_training_numbers_and_drops_duplicates_and_leaks(tmp_path):
    validation = tmp_path / "validation"
    for name, seed in (("cats", 7), ("dogs", 8)):
        (validation / name).mkdir(parents=True)
        (validation / name / f"{name[:-1]}.4001.jpg").write_bytes(photo(seed, (300, 240)))
    out = tmp_path / "out"
    assert kaggle_data.main(["--snapshot", str(snapshot(tmp_path, validation)),
                             "--validation", str(validation), "--out", str(out)]) == 0  # fmt: skip
    train = {p.relative_to(out / "train").as_posix() for p in (out / "train").rglob("*.jpg")}
    assert train == {"cats/cat.0.jpg", "cats/cat.2.jpg", "dogs/dog.4.jpg", "dogs/dog.5001.jpg"}
    record = json.loads((out / "build.json").read_text())
    assert record["dropped"]["cat.1.jpg"] == "same bytes as cat.0.jpg"
    assert record["dropped"]["dog.3.jpg"].startswith("same photo as validation/dogs/dog.4001.jpg")
    assert record["never_read"] == [4501, 5000]
    assert record["counts"]["train"] == {"cats": 2, "dogs": 2}
    assert (out / "train" / "cats" / "cat.2.jpg").read_bytes() == photo(2)
    assert sorted(p.name for p in (out / "validation").rglob("*.jpg")) == [
        "cat.4001.jpg",
        "dog.4001.jpg",
    ]


def test_a_taken_output_folder_is_refused(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("")
    argv = [
        "--snapshot",
        str(tmp_path),
        "--validation",
        str(tmp_path),
        "--out",
        str(tmp_path / "out"),
    ]
    assert kaggle_data.main(argv) == 2
    assert capsys.readouterr().err.startswith("error: ")


def validation_folder(tmp_path: Path) -> Path:
    validation = tmp_path / "validation"
    for name, seed in (("cats", 7), ("dogs", 8)):
        (validation / name).mkdir(parents=True)
        (validation / name / f"{name[:-1]}.4001.jpg").write_bytes(photo(seed, (300, 240)))
    return validation


def test_a_snapshot_lacking_a_photos_contents_is_one_line_and_writes_nothing(tmp_path, capsys):
    """A partial copy (its tree names a photo whose object is absent) was a ValueError
    traceback from parsing `git cat-file --batch`'s `<oid> missing`."""
    validation = validation_folder(tmp_path)
    git_dir = snapshot(tmp_path, validation)
    oid = git(git_dir.parent, "rev-parse", "HEAD:train/dog.4.jpg").strip()
    (git_dir / "objects" / oid[:2] / oid[2:]).unlink()
    out = tmp_path / "out"
    argv = ["--snapshot", str(git_dir), "--validation", str(validation), "--out", str(out)]
    assert kaggle_data.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: {git_dir} lists 1 photos whose contents it does not hold")
    assert "(e.g. dog.4.jpg)" in err[-1]
    assert not out.exists()


def small_snapshot(tmp_path: Path, files: dict[str, bytes]) -> Path:
    repo = tmp_path / "small"
    (repo / "train").mkdir(parents=True)
    for name, data in files.items():
        (repo / "train" / name).write_bytes(data)
    git(repo, "init", "-q")
    git(repo, "add", ".")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "photos")
    return repo / ".git"


def test_a_photo_that_is_not_an_image_is_left_out_with_why(tmp_path):
    """It stopped the whole build, in one line that named no file (`cannot identify image
    file <_io.BytesIO object at 0x...>`)."""
    validation = validation_folder(tmp_path)
    files = {"cat.0.jpg": photo(0), "cat.2.jpg": b"not a jpeg", "dog.1.jpg": photo(1)}
    out = tmp_path / "out"
    argv = ["--snapshot", str(small_snapshot(tmp_path, files)), "--validation", str(validation)]
    assert kaggle_data.main([*argv, "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "train").rglob("*.jpg")) == ["cat.0.jpg", "dog.1.jpg"]
    record = json.loads((out / "build.json").read_text())
    assert record["dropped"] == {"cat.2.jpg": "not a readable JPEG or PNG"}


def test_an_empty_or_unreadable_validation_folder_is_one_line(tmp_path, capsys):
    """An empty class folder was a NumPy traceback (`need at least one array to stack`)."""
    validation = validation_folder(tmp_path)
    argv = ["--snapshot", str(small_snapshot(tmp_path, {"cat.0.jpg": photo(0)}))]
    argv += ["--validation", str(validation), "--out", str(tmp_path / "out")]
    (validation / "dogs" / "dog.4001.jpg").unlink()
    assert kaggle_data.main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {validation / 'dogs'} holds no photo"
    (validation / "dogs" / "dog.4001.jpg").write_bytes(b"not a jpeg")
    assert kaggle_data.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {validation / 'dogs' / 'dog.4001.jpg'} is not a readable JPEG or PNG"
