import os

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


def _cgroup(tmp_path, membership: str, files: dict[str, str]):
    """A cgroup tree under tmp_path/fs and a /proc/self/cgroup naming the process's place."""
    for name, text in files.items():
        path = tmp_path / "fs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (tmp_path / "cgroup").write_text(membership)
    return hardware.cgroup_cpu_quota(tmp_path / "fs", tmp_path / "cgroup")


def test_cgroup_v2_quota_is_the_smallest_on_the_path(tmp_path):
    files = {
        "cpu.max": "max 100000\n",
        "kubepods/cpu.max": "400000 100000\n",
        "kubepods/pod1/cpu.max": "150000 100000\n",
        "kubepods/pod1/app/cpu.max": "max 100000\n",
    }
    assert _cgroup(tmp_path, "0::/kubepods/pod1/app\n", files) == 1.5


def test_cgroup_v2_in_a_container_reads_its_own_root(tmp_path):
    """With a private cgroup namespace the path is "/"; without one it names the host's
    folder, which the container's mount does not hold: the mount's own file counts."""
    assert _cgroup(tmp_path, "0::/\n", {"cpu.max": "50000 100000\n"}) == 0.5
    assert _cgroup(tmp_path, "0::/system.slice/docker-1.scope\n", {"cpu.max": "200000 100000"}) == 2


def test_no_quota_or_an_unreadable_one_is_none(tmp_path):
    assert _cgroup(tmp_path, "0::/\n", {"cpu.max": "max 100000\n"}) is None
    assert _cgroup(tmp_path, "0::/\n", {"cpu.max": "garbage\n"}) is None
    assert _cgroup(tmp_path, "0::/\n", {}) is None
    assert hardware.cgroup_cpu_quota(tmp_path / "fs", tmp_path / "missing") is None


def test_cgroup_v1_quota_over_period(tmp_path):
    files = {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
    }
    membership = "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n"
    assert _cgroup(tmp_path, membership, files) == 2.5


def test_cores_are_held_to_the_quota_rounded_up(monkeypatch):
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(hardware, "cgroup_cpu_quota", lambda: 1.5)
    assert hardware.cores() == 2
    monkeypatch.setattr(hardware, "cgroup_cpu_quota", lambda: 0.25)
    assert hardware.cores() == 1
    monkeypatch.setattr(hardware, "cgroup_cpu_quota", lambda: 16.0)
    assert hardware.cores() == 4  # never more than the affinity allows
    monkeypatch.setattr(hardware, "cgroup_cpu_quota", lambda: None)
    assert hardware.cores() == 4


def test_a_cgroup_folder_that_cannot_be_searched_is_passed_over(tmp_path, monkeypatch):
    """A folder on the path that may not be searched (EACCES: a sandbox, another owner) made
    Path.is_dir raise PermissionError before Python 3.14, and the service stop at start in
    hardware.cores(); the quota of the mount still counts."""
    real_is_dir = hardware.Path.is_dir

    def is_dir(path):
        if "pod1" in path.parts:
            raise PermissionError(13, "Permission denied", str(path))
        return real_is_dir(path)

    monkeypatch.setattr(hardware.Path, "is_dir", is_dir)
    files = {"cpu.max": "300000 100000\n", "kubepods/cpu.max": "100000 100000\n"}
    assert _cgroup(tmp_path, "0::/kubepods/pod1/app\n", files) == 3
    v1 = {"cpu/cpu.cfs_quota_us": "200000\n", "cpu/cpu.cfs_period_us": "100000\n"}
    assert _cgroup(tmp_path, "3:cpu:/kubepods/pod1/app\n", v1) == 2


def test_a_cgroup_name_that_is_not_utf8_is_read(tmp_path):
    """A cgroup's name may hold any bytes; before, /proc/self/cgroup naming one raised
    UnicodeDecodeError out of hardware.cores()."""
    folder = tmp_path / "fs" / os.fsdecode(b"caf\xff")
    folder.mkdir(parents=True)
    (folder / "cpu.max").write_text("50000 100000\n")
    (tmp_path / "cgroup").write_bytes(b"0::/caf\xff\n")
    assert hardware.cgroup_cpu_quota(tmp_path / "fs", tmp_path / "cgroup") == 0.5


def test_cgroup_v1_hybrid_and_extra_colons(tmp_path):
    """A hybrid host (v1 controllers beside the unified `0::` line, no cpu.max at the root),
    `cpu` mounted alone or as a link to `cpu,cpuacct`, and a path holding colons."""
    files = {
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/a:b/cpu.cfs_quota_us": "150000\n",
        "cpu,cpuacct/a:b/cpu.cfs_period_us": "100000\n",
    }
    membership = "12:pids:/a:b\n4:cpu,cpuacct:/a:b\n0::/a:b\n"
    assert _cgroup(tmp_path, membership, files) == 1.5
    (tmp_path / "fs" / "cpu").symlink_to("cpu,cpuacct")
    assert _cgroup(tmp_path, "4:cpuacct,cpu:/a:b\n0::/\n", {}) == 1.5
    assert _cgroup(tmp_path, "1:cpu:/a:b\n2:cpuacct:/a:b\n0::/\n", {}) == 1.5
