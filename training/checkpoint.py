"""A training run's folder: the whole training state after every epoch, to resume from.

    RUN_DIR/run.json          what the run trains (its options and the data's manifest hash)
    RUN_DIR/epoch-0007/       the state after 7 epochs: written to a temporary folder,
        state.json            fsynced, renamed; older epochs are removed once it is in place
        variables.npz         every variable of the model (weights, the augmentation's and
                              dropout's random generator states) and of the optimizer (moments,
                              step count, which is the schedule's position)
        best.npz              the best epoch's weights (--keep-best)
    RUN_DIR/published.json    the version the run published (a kept run folder): it is
                              not resumed again, which would publish the same model twice
    RUN_DIR/precision.json    what the run computes in (`auto` resolved where it began): a
                              resume on other hardware goes on in it
    RUN_DIR/run-id.json       the run's own id, recorded in the metadata of what it publishes:
                              a resume finds its version in the store even where
                              published.json could not be written

The order of the images in each epoch is a function of the seed and the epoch
(data.epoch_order), so a resumed run computes exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from classifier.durable import fsync, json_bytes, write_atomically, write_json
from classifier.store import ModelStore
from training.data import DatasetError
from training.model import PRECISIONS

RUN_FILE = "run.json"
STATE_FILE = "state.json"
VARIABLES_FILE = "variables.npz"
BEST_FILE = "best.npz"
PUBLISHED_FILE = "published.json"
PRECISION_FILE = "precision.json"
RUN_ID_FILE = "run-id.json"
_EPOCH = re.compile(r"^epoch-(\d{4,})$")
_STAMP = re.compile(r"\d{8}T\d{6}Z")  # TrainConfig.started


@dataclass
class RunState:
    """Where a run stands after `epoch` epochs."""

    epoch: int = 0
    history: dict[str, list[float]] = field(default_factory=dict)
    best_accuracy: float = -1.0
    best_epoch: int = 0
    best_weights: list[np.ndarray] | None = None
    seconds: float = 0.0  # training time so far, over every attempt

    def record(self, epoch: int, logs: dict, model: keras.Model, keep_best: bool) -> None:
        """Add one epoch's logs; with `keep_best`, remember its weights if it is the best."""
        self.epoch = epoch
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        accuracy = float(logs.get("val_accuracy", -1.0))
        if keep_best and accuracy > self.best_accuracy:
            self.best_accuracy, self.best_epoch = accuracy, epoch
            self.best_weights = model.get_weights()


_PRECISION_FORM = "it holds " + " or ".join(json.dumps({"precision": p}) for p in PRECISIONS)


class RunDir:
    """The checkpoints of one run; `identity` (options and data hash) must match to resume."""

    def __init__(self, path: Path, identity: dict) -> None:
        self.path = path
        self.identity = identity

    @classmethod
    def start(cls, path: Path, identity: dict) -> RunDir:
        """A new run: the folder must not hold one already."""
        refuse_published(path, "--run-dir")
        if (path / RUN_FILE).exists():
            raise DatasetError(
                f"{path} already holds a run: continue it with --resume {path}, or choose "
                "another --run-dir"
            )
        path.mkdir(parents=True, exist_ok=True)
        write_json(path / RUN_FILE, identity)
        return cls(path, identity)

    @classmethod
    def resume(cls, path: Path, identity: dict) -> RunDir:
        """An interrupted run with the same options and data; refused, naming what differs."""
        try:
            recorded = json.loads((path / RUN_FILE).read_text())
        except (OSError, ValueError) as exc:
            raise DatasetError(f"--resume {path}: no run to resume there ({exc})") from None
        differs = sorted(
            key
            for key in recorded.keys() | identity.keys()
            if recorded.get(key) != identity.get(key)
        )
        if differs:
            listed = ", ".join(
                f"{key} {recorded.get(key)!r} -> {identity.get(key)!r}" for key in differs
            )
            raise DatasetError(
                f"--resume {path}: this run was started with other options or data ({listed}); "
                "give the options it was started with"
            )
        return cls(path, identity)

    @property
    def run_id(self) -> str:
        """This run's id (made on first use: a run begun before ids has one from its next
        resume on)."""
        run_id = recorded_run_id(self.path)
        if run_id is None:
            run_id = uuid.uuid4().hex
            write_atomically(self.path / RUN_ID_FILE, json_bytes({"id": run_id}))
        return run_id

    def precision(self, here: str) -> str:
        """What the run computes in: the precision it began with, so that a run resumed where
        `auto` resolves otherwise (AMX, or a GPU, on one machine and not the other) ends as
        it would have uninterrupted; `here` (resolved on this machine) for a new run."""
        path = self.path / PRECISION_FILE
        try:
            began = json.loads(path.read_text())["precision"]
        except FileNotFoundError:  # a new run, or one begun before runs recorded it
            write_json(path, {"precision": here})
            return here
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{path}: unreadable ({exc!r}); {_PRECISION_FORM}") from None
        if began not in PRECISIONS:
            raise DatasetError(f"{path}: no precision is called {began!r}; {_PRECISION_FORM}")
        if began != here:
            print(
                f"this run began in {began}: it goes on in {began} (here, --precision "
                f"{self.identity.get('precision')} would be {here})",
                file=sys.stderr,
            )
        return began

    def epochs(self) -> list[int]:
        return sorted(
            int(m[1]) for p in self.path.iterdir() if p.is_dir() and (m := _EPOCH.match(p.name))
        )

    def save(self, model: keras.Model, state: RunState) -> None:
        """Write the state after `state.epoch` epochs atomically; then drop older epochs."""
        staging = Path(tempfile.mkdtemp(prefix=".epoch-", dir=self.path))
        try:
            _save_variables(staging / VARIABLES_FILE, model)
            if state.best_weights is not None:
                np.savez(staging / BEST_FILE, *state.best_weights)
            write_json(
                staging / STATE_FILE,
                {
                    "epoch": state.epoch,
                    "history": state.history,
                    "best_accuracy": state.best_accuracy,
                    "best_epoch": state.best_epoch,
                    "seconds": state.seconds,
                },
            )
            for path in staging.iterdir():
                fsync(path)
            fsync(staging)
            os.rename(staging, self.path / f"epoch-{state.epoch:04d}")
            fsync(self.path)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        for epoch in self.epochs():
            if epoch < state.epoch:
                shutil.rmtree(self.path / f"epoch-{epoch:04d}", ignore_errors=True)

    def restore(self, model: keras.Model) -> RunState:
        """Load the newest epoch's state into `model` (compiled, as the run built it)."""
        epochs = self.epochs()
        if not epochs:
            return RunState()
        folder = self.path / f"epoch-{epochs[-1]:04d}"
        recorded = json.loads((folder / STATE_FILE).read_text())
        _load_variables(folder / VARIABLES_FILE, model)
        best = None
        if (folder / BEST_FILE).exists():
            with np.load(folder / BEST_FILE) as data:
                best = [data[f"arr_{i}"] for i in range(len(data.files))]
        return RunState(
            epoch=recorded["epoch"],
            history=recorded["history"],
            best_accuracy=recorded["best_accuracy"],
            best_epoch=recorded["best_epoch"],
            best_weights=best,
            seconds=recorded["seconds"],
        )


def mark_published(path: Path, name: str, version: int) -> None:
    """Record in a kept run folder which version it published."""
    write_atomically(path / PUBLISHED_FILE, json_bytes({"name": name, "version": version}))


def recorded_run_id(path: Path) -> str | None:
    try:
        run_id = json.loads((path / RUN_ID_FILE).read_text())["id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return run_id if isinstance(run_id, str) and run_id else None


def refuse_published(
    path: Path | None, flag: str = "--resume", store: ModelStore | None = None, name: str = ""
) -> None:
    """Refuse to resume (`path`: --resume's folder) a run that already published its model:
    it would publish the same model again as a new version. Its published.json says so, or
    else a version of `name` in `store` whose metadata holds the run's id (published.json
    can fail to be written after the publish)."""
    if path is None:
        return
    published = None
    if (path / PUBLISHED_FILE).exists():
        try:
            record = json.loads((path / PUBLISHED_FILE).read_text())
            published = f"{record['name']} v{record['version']}"
        except (OSError, ValueError, KeyError, TypeError):
            published = "its model"
    elif store is not None and (run_id := recorded_run_id(path)) is not None:
        published = next(
            (
                f"{name} v{status.version}"
                for status in store.scan(name)
                if status.metadata is not None
                and (status.metadata.training or {}).get("run_id") == run_id
            ),
            None,
        )
    if published is not None:
        raise DatasetError(
            f"{flag} {path}: this run is finished, it published {published}; train again "
            "with a new --run-dir (or none)"
        )


def prune_runs(new: Path, keep: int = 2) -> list[Path]:
    """Remove the oldest default run folders of the model `new` is for (`<name>-<time>`
    beside it: runs that were killed and never resumed; a finished one removes itself),
    keeping the newest `keep`, so scheduled retrains that fail cannot fill the store."""
    prefix = new.name.rsplit("-", 1)[0] + "-"
    if not new.parent.is_dir():
        return []
    runs = sorted(
        p
        for p in new.parent.iterdir()
        if p.is_dir() and p.name.startswith(prefix) and _STAMP.fullmatch(p.name[len(prefix) :])
    )
    stale = runs[: max(len(runs) - keep, 0)]
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _all_variables(model: keras.Model) -> list:
    """The model's variables (weights and random generator states), then the optimizer's."""
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    return [*model.variables, *model.optimizer.variables]


def _names(variables: list) -> list[str]:
    """Variable paths without the numbers Keras adds to repeated names in one process
    (`seed_generator_2/...`), with their shapes: what must match to resume."""
    return [f"{re.sub(r'_[0-9]+(?=/|$)', '', v.path)}{tuple(v.shape)}" for v in variables]


def _save_variables(path: Path, model: keras.Model) -> None:
    variables = _all_variables(model)
    np.savez(
        path,
        paths=np.array(_names(variables)),
        **{f"v{i}": np.asarray(v.numpy()) for i, v in enumerate(variables)},
    )


def _load_variables(path: Path, model: keras.Model) -> None:
    variables = _all_variables(model)
    with np.load(path) as data:
        paths = [str(p) for p in data["paths"]]
        if paths != _names(variables):
            raise DatasetError(f"{path} holds another model's variables: it cannot be resumed")
        for i, variable in enumerate(variables):
            variable.assign(data[f"v{i}"])
