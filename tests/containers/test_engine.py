"""The engine's own housekeeping, without an engine: a dockerd it started never outlives it."""

from __future__ import annotations

import subprocess

import pytest

from tests.containers import engine as engine_module
from tests.containers.engine import Engine


def test_a_daemon_interrupted_while_starting_is_stopped(tmp_path, monkeypatch):
    """Ctrl-C while dockerd starts (it runs in a session of its own, so the terminal's
    SIGINT never reaches it): the daemon is stopped, by its PID, before the interrupt goes on."""
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen(argv, **kwargs):  # a stand-in daemon: a process of this test's own
        started.append(real_popen(["sleep", "60"], **kwargs))
        return started[-1]

    def interrupted(self) -> bool:
        if self.daemon is None:
            return False  # no engine answers before the start
        raise KeyboardInterrupt

    monkeypatch.setattr(engine_module.subprocess, "Popen", popen)
    monkeypatch.setattr(engine_module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(Engine, "answers", interrupted)
    engine = Engine(tmp_path / "docker-config")
    engine.bridge_existed = True  # nothing of the host's network is touched
    engine.config_dir.mkdir()
    try:
        with pytest.raises(KeyboardInterrupt):
            engine.start()
        [daemon] = started
        assert daemon.poll() is not None and engine.daemon is None
    finally:
        for process in started:  # the stand-in, whatever happened
            if process.poll() is None:
                process.kill()
                process.wait()
