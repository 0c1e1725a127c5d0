"""Podman, and the stand-in images the stack test (tests/test_stack_up.py) runs the compose file on.

The registries that host the real images cannot be reached from the machines the tests run on,
so the images `docker-compose.yml` and the `Dockerfile` name are stood in for by images built here
(tests/standins/, for tests only): a Debian bookworm made with debootstrap, imported as
`debian:bookworm-slim`, and on it one stand-in per image, tagged exactly as the compose file and
the Dockerfile name the real one. The Debian mirror is the one this machine's apt uses, read at run
time; an apt proxy or local CA certificates the host's apt relies on are copied into the images.

Python packages: the project's Dockerfile runs `pip install -c constraints.txt .` unchanged; the
python stand-in sends pip to a wheel directory prepared on the host (`pip download`) and served
over HTTP on the host (`PIP_NO_INDEX=1`, `PIP_FIND_LINKS`).

Everything built is kept between runs under CACHE (the debootstrap tarball, the wheels) and in
podman's image store (each stand-in carries a label with the hash of what it was built from, and
is rebuilt only when that changes).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterable
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
STANDINS = REPO / "tests" / "standins"
CACHE = Path(os.environ.get("COINCAP_STACK_CACHE", "/var/tmp/coincap-stack-cache"))
# fixed, because the python stand-in bakes the wheel directory's address into its ENV
WHEELHOUSE_PORT = int(os.environ.get("COINCAP_STACK_WHEELHOUSE_PORT", "38765"))
HOST_FROM_CONTAINERS = "host.containers.internal"
BASE_TAG = "docker.io/library/debian:bookworm-slim"
KEY_LABEL = "coincap.standin.key"
SOCKET = Path("/run/podman/podman.sock")
CONTAINERS_CONF = Path("/etc/containers/containers.conf")
# docs/environment.md: no CAP_SYS_RESOURCE here (podman's default ulimits cannot be set), and crun
# rejects this host's hybrid cgroups
CONTAINERS_CONF_TEXT = """\
# written by the CoinCap ELT stack test (tests/stack_images.py); see docs/environment.md
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"]

[engine]
runtime = "runc"
"""
DEBOOTSTRAP_ARGS = ["--variant=minbase", "--include=ca-certificates", "bookworm"]
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sha(*parts: bytes | str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() if isinstance(part, str) else part)
        digest.update(b"\0")
    return digest.hexdigest()[:16]


def run(argv: list[str], timeout: float = 900, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


def checked(argv: list[str], timeout: float = 900, **kwargs) -> subprocess.CompletedProcess[str]:
    proc = run(argv, timeout=timeout, **kwargs)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} … failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
            f"\n{proc.stderr[-3000:]}"
        )
    return proc


# --------------------------------------------------------------------------- the host's apt
@functools.cache
def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses for bookworm main (not the security archive)."""
    entries: list[tuple[str, list[str]]] = []  # (uri, suites)
    sources = Path("/etc/apt/sources.list.d")
    legacy = [Path("/etc/apt/sources.list"), *sorted(sources.glob("*.list"))]
    for path in legacy:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            match = re.match(r"^\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line)
            if match and "main" in match[4].split():
                entries.append((match[2], [match[3]]))
    for path in sorted(sources.glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, v in re.findall(r"^([A-Za-z-]+):(.*)$", stanza, re.M)
            )
            if "deb" in fields.get("types", "").split() and "main" in fields.get(
                "components", ""
            ).split(" "):
                for uri in fields.get("uris", "").split():
                    entries.append((uri, fields.get("suites", "").split()))
    for uri, suites in entries:
        if "bookworm" in suites and "security" not in uri:
            return uri.rstrip("/")
    raise RuntimeError("no Debian bookworm mirror found in this machine's apt sources")


@functools.cache
def apt_proxy_conf() -> str:
    """The host's apt proxy settings (apt.conf syntax), empty when it has none."""
    proc = run(["apt-config", "dump"], timeout=30)
    lines = [
        line
        for line in proc.stdout.splitlines()
        if re.match(r'^Acquire::(https?|ftp)::Proxy(::[^ ]+)? "', line, re.I)
    ]
    return "".join(f"{line}\n" for line in lines)


def apt_proxy_env() -> dict[str, str]:
    env = {}
    for scheme in ("http", "https"):
        match = re.search(rf'^Acquire::{scheme}::Proxy "([^"]+)";', apt_proxy_conf(), re.M | re.I)
        if match and match[1].upper() != "DIRECT":
            env[f"{scheme}_proxy"] = match[1]
    return env


def host_ca_certs() -> list[Path]:
    """CA certificates this machine added to its trust store (the ones a TLS proxy may need)."""
    return sorted(Path("/usr/local/share/ca-certificates").glob("**/*.crt"))


# --------------------------------------------------------------------------- podman
def write_containers_conf() -> str | None:
    """Podman's settings for this host (docs/environment.md). None when in place, else why not."""
    if not CONTAINERS_CONF.exists():
        CONTAINERS_CONF.parent.mkdir(parents=True, exist_ok=True)
        CONTAINERS_CONF.write_text(CONTAINERS_CONF_TEXT)
        return None
    text = CONTAINERS_CONF.read_text()
    if 'runtime = "runc"' in text and "nofile=16384:16384" in text:
        return None
    return (
        f"{CONTAINERS_CONF} exists without the settings the stack test needs; add "
        '[containers] default_ulimits = ["nofile=16384:16384", "nproc=16384:16384"] and '
        '[engine] runtime = "runc" to it'
    )


def podman_service_answers() -> bool:
    """Does podman's Docker-compatible API answer on SOCKET (GET /_ping -> OK)?"""
    if not SOCKET.exists():
        return False
    try:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(SOCKET))
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: d\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    except OSError:
        return False
    return answer.startswith(b"HTTP/1.") and answer.rstrip().endswith(b"OK")


def image_key(tag: str) -> str | None:
    proc = run(["podman", "image", "inspect", "--format", "{{json .Labels}}", tag], timeout=60)
    if proc.returncode != 0:
        return None
    labels = yaml.safe_load(proc.stdout) or {}
    return labels.get(KEY_LABEL)


def full_tag(image: str) -> str:
    """`postgres:15` -> docker.io/library/postgres:15; `metabase/metabase:v1` -> docker.io/…"""
    name = image.split(":")[0]
    if "/" not in name:
        return f"docker.io/library/{image}"
    if "." not in name.split("/")[0]:
        return f"docker.io/{image}"
    return image


def project_images() -> dict[str, str]:
    """{stand-in directory: tag} for the images the compose file and the Dockerfile name."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    froms = re.findall(r"^FROM\s+(\S+)", (REPO / "Dockerfile").read_text(), re.M)
    named = [s.get("image", "") for s in compose["services"].values() if "build" not in s]
    tags: dict[str, str] = {}
    for image in [*froms, *named]:
        repo = image.split(":")[0]
        kind = {
            "python": "python",
            "postgres": "postgres",
            "nginx": "nginx",
            "metabase/metabase": "metabase",
        }.get(repo)
        if kind is None:
            raise RuntimeError(f"no stand-in for the image {image!r} (tests/standins/)")
        tags[kind] = full_tag(image)
    return tags


# --------------------------------------------------------------------------- wheels
def ensure_wheelhouse(python: str) -> Path:
    """The project's pinned dependencies as wheels (plus the build backend), in CACHE."""
    key = sha((REPO / "constraints.txt").read_bytes(), (REPO / "pyproject.toml").read_bytes(), "v1")
    wheels = CACHE / f"wheels-{key}"
    if (wheels / ".complete").exists():
        return wheels
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    src = Path(tempfile.mkdtemp(prefix="coincap-wheel-src-"))
    try:
        for name in ("pyproject.toml", "constraints.txt", "README.md"):
            shutil.copy(REPO / name, src / name)
        shutil.copytree(REPO / "ingest", src / "ingest")
        backend = re.search(r'requires = \["([^"]+)"\]', (REPO / "pyproject.toml").read_text())
        checked(
            [python, "-m", "pip", "download", "--quiet", "-c", "constraints.txt", "-d", str(wheels)]
            + [".", backend[1] if backend else "setuptools", "wheel"],
            cwd=src,
        )
    finally:
        shutil.rmtree(src, ignore_errors=True)
    (wheels / ".complete").touch()
    return wheels


class WheelServer:
    """The wheel directory over HTTP on every interface of the host (containers reach it as
    host.containers.internal), on WHEELHOUSE_PORT."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietFiles, directory=str(directory))
        try:
            self._server = ThreadingHTTPServer(("0.0.0.0", WHEELHOUSE_PORT), handler)
        except OSError as exc:
            raise RuntimeError(
                f"port {WHEELHOUSE_PORT} for the wheel directory is taken ({exc}); free it or "
                "set COINCAP_STACK_WHEELHOUSE_PORT"
            ) from exc
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


def wheelhouse_url() -> str:
    return f"http://{HOST_FROM_CONTAINERS}:{WHEELHOUSE_PORT}/"


# --------------------------------------------------------------------------- images
def _files_digest(paths: Iterable[Path]) -> list[bytes]:
    out = []
    for path in sorted(paths):
        out += [str(path.name).encode(), path.read_bytes()]
    return out


def ensure_base(log) -> str:
    """`debian:bookworm-slim` from debootstrap; returns its key."""
    mirror = apt_mirror()
    certs = host_ca_certs()
    key = sha(mirror, *DEBOOTSTRAP_ARGS, apt_proxy_conf(), *_files_digest(certs), "base-v1")
    if image_key(BASE_TAG) == key:
        return key
    CACHE.mkdir(parents=True, exist_ok=True)
    tarball = CACHE / f"debian-bookworm-{key}.tar"
    if not tarball.exists():
        log(f"debootstrap of Debian bookworm from {mirror} (cached in {CACHE})")
        rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=CACHE))
        try:
            checked(
                ["debootstrap", *DEBOOTSTRAP_ARGS, str(rootfs), mirror],
                env={**os.environ, **apt_proxy_env()},
            )
            # what the host's apt needs to reach the mirror, for the images' apt as well
            if apt_proxy_conf():
                (rootfs / "etc/apt/apt.conf.d/01proxy-from-test-host").write_text(apt_proxy_conf())
            if certs:
                target = rootfs / "usr/local/share/ca-certificates"
                for cert in certs:
                    shutil.copy(cert, target / cert.name)
                checked(["chroot", str(rootfs), "update-ca-certificates"])
            shutil.rmtree(rootfs / "var/cache/apt/archives", ignore_errors=True)
            partial = tarball.with_suffix(".partial")
            checked(["tar", "-C", str(rootfs), "-cf", str(partial), "."])
            partial.rename(tarball)
        finally:
            shutil.rmtree(rootfs, ignore_errors=True)
    log(f"importing {tarball.name} as {BASE_TAG}")
    checked(
        [
            "podman",
            "import",
            "--change",
            f"ENV PATH={BASE_PATH}",
            "--change",
            f"LABEL {KEY_LABEL}={key}",
            "--change",
            'CMD ["bash"]',
            str(tarball),
            BASE_TAG,
        ]
    )
    return key


def ensure_standin(kind: str, tag: str, base_key: str, log) -> None:
    """Build tests/standins/KIND as TAG unless an image built from the same inputs is there."""
    context_files = {p.name: p for p in (STANDINS / kind).iterdir() if p.is_file()}
    build_args = {}
    if kind == "metabase":
        context_files["fake_metabase.py"] = REPO / "devkit" / "fake_metabase.py"
    if kind == "python":
        build_args["WHEELHOUSE_URL"] = wheelhouse_url()
    key = sha(
        base_key,
        *_files_digest(context_files.values()),
        *(f"{k}={v}" for k, v in sorted(build_args.items())),
    )
    if image_key(tag) == key:
        return
    log(f"building the stand-in {tag} (tests/standins/{kind})")
    context = Path(tempfile.mkdtemp(prefix=f"standin-{kind}-"))
    try:
        for name, path in context_files.items():
            shutil.copy2(path, context / name)
        argv = ["podman", "build", "--format", "docker", "--label", f"{KEY_LABEL}={key}"]
        for name, value in build_args.items():
            argv += ["--build-arg", f"{name}={value}"]
        checked([*argv, "-t", tag, "-f", str(context / "Containerfile"), str(context)])
    finally:
        shutil.rmtree(context, ignore_errors=True)


def ensure_images(log=print) -> dict[str, str]:
    """Every stand-in in place (built or reused); returns {kind: tag}."""
    base_key = ensure_base(log)
    tags = project_images()
    for kind, tag in tags.items():
        ensure_standin(kind, tag, base_key, log)
    return tags
