"""Publishing is refused where a directory rename is not atomic (object-storage FUSE)."""

import pytest

from classifier.errors import ModelStoreError
from classifier.filesystems import mount_type, rename_refusal
from classifier.store import ModelStore

MOUNTS = """\
/dev/vda1 / ext4 rw 0 0
nfs.example:/export /mnt/nfs nfs4 rw 0 0
my-bucket /mnt/bucket fuse.s3fs rw 0 0
gcs-bucket /mnt/gcs fuse.gcsfuse rw 0 0
sshfs#me@host: /mnt/ssh fuse.sshfs rw 0 0
"""


@pytest.mark.parametrize(
    ("path", "kind", "refused"),
    [
        ("/srv/models", "ext4", False),
        ("/mnt/nfs/models", "nfs4", False),
        ("/mnt/bucket/models", "fuse.s3fs", True),
        ("/mnt/gcs", "fuse.gcsfuse", True),
        ("/mnt/ssh/models", "fuse.sshfs", False),
    ],
)
def test_the_mount_holding_a_path_decides(path, kind, refused):
    assert mount_type(path, MOUNTS)[0] == kind
    assert (rename_refusal(path, MOUNTS) is not None) == refused


def test_publish_refuses_an_object_storage_mount_and_writes_nothing(tmp_path, monkeypatch):
    from classifier import store

    monkeypatch.setattr(store, "rename_refusal", lambda path: "not atomic here")
    with pytest.raises(ModelStoreError) as info:
        ModelStore(tmp_path).publish("pets", lambda folder: {})
    assert info.value.code == "unsafe_store"
    assert list((tmp_path / "pets").iterdir()) == []


def test_this_machines_temp_folder_is_fine(tmp_path):
    assert rename_refusal(tmp_path) is None
