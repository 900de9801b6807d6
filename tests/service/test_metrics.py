"""service.metrics.render: the workers' files summed, also while they are being written."""

import threading

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from service import metrics


def test_render_reads_again_a_file_caught_mid_write(tmp_path, monkeypatch):
    """Workers write their files without a lock; a read that caught one mid-write (a new file,
    a new series: a cut JSON key) made /metrics a 500, once in CI."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    done = threading.Event()

    def worker_files() -> None:  # new files and series, as new workers and labels make
        for i in range(150):
            values = MmapedDict(str(tmp_path / f"counter_{100000 + i}.db"))
            for k in range(20):
                key = mmap_key("demo_total", "demo_total", ["k"], [str(k)], "demo")
                values.write_value(key, 1.0, 0.0)
            values.close()
        done.set()

    writer = threading.Thread(target=worker_files)
    writer.start()
    renders = 0
    try:
        while not done.is_set():
            body, _ = metrics.render()
            renders += 1
    finally:
        writer.join()
    assert renders > 0
    body, _ = metrics.render()
    assert b'demo_total{k="19"} 150.0' in body
