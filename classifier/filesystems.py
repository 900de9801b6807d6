"""What the model store's filesystem promises: publishing needs an atomic directory rename.

Local filesystems and NFS rename a directory in one step; object-storage FUSE mounts (s3fs,
gcsfuse, goofys, Mountpoint for S3, blobfuse) copy it object by object, so a reader could see
half a version. The store refuses to publish there (docs/kubernetes.md).
"""

from __future__ import annotations

import os
from pathlib import Path

OBJECT_STORAGE = ("s3fs", "gcsfuse", "goofys", "mountpoint-s3", "blobfuse", "rclone", "juicefs")


def mount_type(path: str | os.PathLike, mounts: str | None = None) -> tuple[str, str]:
    """(filesystem type, source) of the mount holding `path`, from /proc/mounts."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return "", ""
    target = os.path.realpath(path)
    best = ("", "", "")
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        source, point, kind = fields[0], fields[1].replace("\\040", " "), fields[2]
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best[0]):
            best = (point, kind, source)
    return best[1], best[2]


def rename_refusal(path: str | os.PathLike, mounts: str | None = None) -> str | None:
    """Why publishing under `path` would not be atomic (None where rename is atomic)."""
    kind, source = mount_type(path, mounts)
    names = f"{kind} {source}".lower()
    if "fuse" in kind and any(name in names for name in OBJECT_STORAGE):
        return (
            f"the model store {path} is on an object-storage FUSE mount ({kind} from {source}), "
            "where a directory rename is not atomic; publish to a local disk or NFS volume"
        )
    return None
