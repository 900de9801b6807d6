"""Base images for the container test where no image registry can be reached: stand-ins.

The Dockerfile and docker-compose.yml name the real images (users pull those). Here, each
base image that is neither on the engine already nor can be pulled is built under its exact
name from Debian: `debootstrap --variant=minbase bookworm` from the mirror this machine's apt
uses, trimmed as Debian's slim images are (no apt lists, docs, man pages or locales) and
imported (`docker import`), then standins/python.Dockerfile or standins/nginx.Dockerfile on
top. They stay on the engine as a cache, like the images the test builds.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from tests.containers.engine import Engine, Unavailable, apt_install, debian_mirror, run
from tests.helpers import REPO

HERE = Path(__file__).resolve().parent
DEBIAN = "image-classifier-test/debian:bookworm-minbase"  # the test's own, never pulled
HOST_CAS = Path("/usr/local/share/ca-certificates")
PULL_TIMEOUT_S = 60
# Left out of the imported root, as Debian's slim images leave them out.
TRIMMED = (
    "var/cache/apt/*.bin",
    "var/cache/apt/archives/*.deb",
    "var/lib/apt/lists/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/locale/*",
)


def python_image() -> tuple[str, str]:
    """The Dockerfile's Python base image, and the Python version it names."""
    text = (REPO / "Dockerfile").read_text()
    version = re.search(r"^ARG PYTHON_VERSION=(\S+)$", text, flags=re.M).group(1)
    [image] = {
        line.split()[1].replace("${PYTHON_VERSION}", version)
        for line in text.splitlines()
        if line.startswith("FROM python:")
    }
    return image, version


def nginx_image() -> str:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    return compose["services"]["nginx"]["image"]


def ensure(engine: Engine) -> dict[str, str]:
    """Each base image present on the engine: as it was, pulled, or a stand-in built here.
    Returns how each came to be there."""
    python, version = python_image()
    how = {}
    for image, dockerfile in ((python, "python.Dockerfile"), (nginx_image(), "nginx.Dockerfile")):
        found = engine.docker("image", "inspect", image, check=False)
        if found.returncode == 0 and not stale(
            engine, found.stdout, HERE / "standins" / dockerfile
        ):
            how[image] = "on the engine"
            continue
        try:
            pulled = engine.docker("pull", image, timeout=PULL_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            pulled = None
        if pulled is not None and pulled.returncode == 0:
            how[image] = "pulled"
            continue
        build_standin(engine, image, HERE / "standins" / dockerfile)
        how[image] = "stand-in built from Debian"
    found = engine.docker("run", "--rm", python, "python", "--version").stdout.split()[-1]
    if not found.startswith(f"{version}."):
        raise AssertionError(f"{python} runs Python {found}, the Dockerfile names {version}")
    return how


DIGEST_LABEL = "standin.digest"


def digest(dockerfile: Path) -> str:
    """What a stand-in is built from: its Dockerfile and the scripts beside it."""
    files = [dockerfile, *sorted(dockerfile.parent.glob("*.sh"))]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]


def stale(engine: Engine, inspected: str, dockerfile: Path) -> bool:
    """A stand-in built from an older definition: its digest label differs, or it has none
    but was built on this test's Debian (before stand-ins were labelled). A real image has
    neither, and is kept."""
    info = json.loads(inspected)[0]
    labels = (info.get("Config") or {}).get("Labels") or {}
    if DIGEST_LABEL in labels:
        return labels[DIGEST_LABEL] != digest(dockerfile)
    debian = engine.docker("image", "inspect", DEBIAN, check=False)
    if debian.returncode != 0:
        return False
    base = json.loads(debian.stdout)[0]["RootFS"]["Layers"][:1]
    return info["RootFS"]["Layers"][:1] == base


def build_standin(engine: Engine, image: str, dockerfile: Path) -> None:
    if engine.docker("image", "inspect", DEBIAN, check=False).returncode != 0:
        import_debian(engine)
    with tempfile.TemporaryDirectory(prefix="standin-") as context:
        cas = Path(context) / "ca-certificates"
        if HOST_CAS.is_dir():
            shutil.copytree(HOST_CAS, cas)
        else:
            cas.mkdir()
        for script in dockerfile.parent.glob("*.sh"):
            shutil.copy2(script, context)
        engine.docker(
            "build", "--quiet", "--build-arg", f"BASE={DEBIAN}", "--tag", image,
            "--label", f"{DIGEST_LABEL}={digest(dockerfile)}", "--file", str(dockerfile), context,
        )  # fmt: skip


def import_debian(engine: Engine) -> None:
    if shutil.which("debootstrap") is None:
        apt_install("debootstrap")
    mirror = debian_mirror()
    with tempfile.TemporaryDirectory(prefix="debootstrap-") as tmp:
        root = Path(tmp) / "root"
        argv = ["nice", "debootstrap", "--variant=minbase", "bookworm", str(root), mirror]
        result = run(argv, timeout=900)
        if result.returncode != 0:
            raise Unavailable(f"debootstrap failed: {result.stdout.strip().splitlines()[-1:]}")
        for pattern in TRIMMED:
            for path in root.glob(pattern):
                shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        imported = subprocess.run(
            ["docker", "import", "-", DEBIAN],
            stdin=tar.stdout,
            capture_output=True,
            text=True,
            env=engine.env,
            timeout=600,
        )
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise AssertionError(f"docker import failed: {imported.stderr}")
