import pytest

from classifier import hardware


@pytest.mark.parametrize(
    ("visible", "installed", "seen"),
    [
        (None, 2, 2),  # unset: every installed GPU
        ("", 2, 0),
        ("-1", 2, 0),
        ("-1,0", 2, 0),  # CUDA stops at the first entry that names no device
        ("0,-1,1", 2, 1),
        ("1", 2, 1),
        ("0,1", 2, 2),
        (" 1 , 0 ", 2, 2),
        ("2,0", 2, 0),  # index past the installed count
        ("0,0", 2, 1),
        ("0,00", 2, 1),
        ("none", 1, 0),
        ("NoDevFiles", 1, 0),
        ("GPU-8a1b2c3d", 1, 1),
        ("MIG-1f2e,0", 1, 1),  # never more than are installed
        ("0", 0, 0),
    ],
)
def test_visible_gpus_reads_cuda_visible_devices_as_cuda_does(visible, installed, seen):
    assert hardware.visible_gpus(visible, installed) == seen
