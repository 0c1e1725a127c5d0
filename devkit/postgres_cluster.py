"""A throwaway PostgreSQL cluster for the tests and for CI.

The cluster lives entirely in one directory (``DIR``):

    DIR/data/          the cluster (initdb)
    DIR/sock/          unix sockets (nothing is created in /var/run)
    DIR/server.log     the server's log
    DIR/cluster.json   host, port, superuser and password, so a later ``start`` reuses them

It listens on 127.0.0.1 on a free port, with password (scram-sha-256) authentication for a
superuser. When run as root, initdb and pg_ctl run as the ``postgres`` OS user (PostgreSQL refuses
to run as root; the user is created as a system user when the machine has none) and DIR is
chowned to it.

The server binaries are Debian's PostgreSQL 15 when installed (CI and production run 15), else
another system installation, else the ones the ``pgserver`` wheel (a dev dependency) ships, so
that a machine with nothing but Python and make still runs the suite against a real server.

As a library::

    cluster = PostgresCluster(path)
    cluster.start()            # initdb on first use, then pg_ctl start
    cluster.env()              # {"POSTGRES_HOST": ..., "POSTGRES_PORT": ..., ...}
    cluster.stop()             # the same cluster can be started again, on the same port
    cluster.destroy()          # stop and delete DIR

As a CLI (for .ci/run)::

    eval "$(python -m devkit.postgres_cluster start DIR)"    # prints export lines
    python -m devkit.postgres_cluster stop DIR
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import os
import pwd
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

SUPERUSER = "postgres"
DEFAULT_DB = "postgres"
HOST = "127.0.0.1"


class ClusterError(RuntimeError):
    """The cluster could not be created, started or stopped; the message says why."""


DEBIAN_BINDIR = Path("/usr/lib/postgresql/15/bin")  # CI's and production's version
INSTALL_HINT = (
    "`make install` (the dev dependencies bring pgserver, whose wheel ships the server) or "
    "`sudo apt-get install -y postgresql`"
)


def find_bindir() -> Path:
    """Where initdb, pg_ctl and postgres are, in this order of preference:

    1. Debian's PostgreSQL 15 (/usr/lib/postgresql/15/bin): what CI and production run;
    2. what ``pg_config --bindir`` names, else the newest /usr/lib/postgresql/*/bin;
    3. the server binaries inside the ``pgserver`` wheel (a dev dependency), so that a machine
       with nothing but Python gets a real server too.
    """
    if (DEBIAN_BINDIR / "pg_ctl").exists():
        return DEBIAN_BINDIR
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True
            ).stdout.strip()
            if out and (Path(out) / "pg_ctl").exists():
                return Path(out)
        except subprocess.CalledProcessError:
            pass
    candidates = sorted(
        (Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if Path(p, "pg_ctl").exists()),
        key=lambda p: _version_key(p.parent.name),
    )
    if candidates:
        return candidates[-1]
    bundled = pgserver_bindir()
    if bundled is not None:
        return bundled
    raise ClusterError(
        f"error: no PostgreSQL server binaries found (looked in {DEBIAN_BINDIR}, "
        "pg_config --bindir, /usr/lib/postgresql/*/bin and the pgserver package); "
        f"install them with {INSTALL_HINT}"
    )


def pgserver_bindir() -> Path | None:
    """The bin directory inside the installed ``pgserver`` package, found without importing it
    (importing it sets up its own runtime directories)."""
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if (bindir / "pg_ctl").exists() else None


def server_version(bindir: Path) -> str:
    """ "15.10", "16.2": the version of the server in ``bindir``."""
    out = subprocess.run(
        [str(bindir / "postgres"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[-1]


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (0,)


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def _is_root() -> bool:
    return os.geteuid() == 0


def _ensure_postgres_os_user() -> None:
    """As root the server runs as the ``postgres`` OS user; Debian's package creates it, and on a
    machine without that package a system user of that name is created here."""
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SUPERUSER,
            ],
            check=True,
            capture_output=True,
        )


def _usable_by_postgres_os_user(bindir: Path) -> Path:
    """``bindir``, or a copy that the ``postgres`` OS user can run. Debian's binaries always are;
    the pgserver wheel inside a root-only checkout (e.g. under /root) is not, so its server and
    the libraries beside it (``pgserver.libs``, found through the binaries' relative rpath) are
    copied once under the system temp dir, world-readable, keeping that layout."""
    probe = ["runuser", "-u", SUPERUSER, "--", "test", "-x", str(bindir / "postgres")]
    if subprocess.run(probe, capture_output=True).returncode == 0:
        return bindir
    site = bindir.parents[2]  # .../site-packages/pgserver/pginstall/bin
    target = Path(tempfile.gettempdir()) / f"coincap-pgserver-{server_version(bindir)}"
    copied_bindir = target / "pgserver" / "pginstall" / "bin"
    if not (copied_bindir / "postgres").exists():
        staging = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        tree = staging / "tree"
        shutil.copytree(bindir.parent, tree / "pgserver" / "pginstall", symlinks=True)
        if (site / "pgserver.libs").is_dir():
            shutil.copytree(site / "pgserver.libs", tree / "pgserver.libs", symlinks=True)
        for path in [staging, *staging.rglob("*")]:
            if not path.is_symlink():
                readable = 0o555 if path.is_dir() else 0o444
                path.chmod(path.stat().st_mode | readable)
        try:
            tree.rename(target)  # atomic: two test workers may race here
        except OSError:
            pass  # the other one won; its copy is the same
        shutil.rmtree(staging, ignore_errors=True)
    return copied_bindir


class PostgresCluster:
    """One cluster in one directory. Every method is safe to call twice."""

    def __init__(self, base_dir: str | os.PathLike[str], bindir: Path | None = None):
        self.base_dir = Path(base_dir).resolve()
        self.bindir = bindir or find_bindir()
        if _is_root():
            _ensure_postgres_os_user()
            self.bindir = _usable_by_postgres_os_user(self.bindir)
        self.data_dir = self.base_dir / "data"
        self.socket_dir = self.base_dir / "sock"
        self.logfile = self.base_dir / "server.log"
        self.state_file = self.base_dir / "cluster.json"
        self.host = HOST
        self.user = SUPERUSER
        self.dbname = DEFAULT_DB
        self.port: int | None = None
        self.password: str | None = None
        if self.state_file.exists():
            state = json.loads(self.state_file.read_text())
            self.port = int(state["port"])
            self.password = state["password"]

    # ---------------------------------------------------------------- running commands
    def _run(self, args: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [str(a) for a in args]
        if _is_root():
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # A clean locale: initdb fails on locales that are not generated on the machine.
        env = {**os.environ, "LC_ALL": "C", "LANG": "C"}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=self.base_dir)
        if check and proc.returncode != 0:
            raise ClusterError(
                f"error: {' '.join(shlex.quote(str(c)) for c in args)} failed "
                f"(exit {proc.returncode}):\n{proc.stdout}{proc.stderr}{self._log_tail()}"
            )
        return proc

    def _log_tail(self, lines: int = 20) -> str:
        if not self.logfile.exists():
            return ""
        tail = self.logfile.read_text(errors="replace").splitlines()[-lines:]
        return "\n--- server.log (tail) ---\n" + "\n".join(tail)

    def _chown_to_postgres(self, path: Path) -> None:
        if _is_root():
            shutil.chown(path, user="postgres", group="postgres")

    # ---------------------------------------------------------------- lifecycle
    @property
    def initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").exists()

    def init(self) -> None:
        """initdb into DIR/data with a random superuser password (once)."""
        if self.initialized:
            return
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self._chown_to_postgres(self.base_dir)
        if _is_root():
            # the postgres user must be able to reach DIR
            probe = subprocess.run(
                ["runuser", "-u", "postgres", "--", "test", "-w", str(self.base_dir)]
            )
            if probe.returncode != 0:
                raise ClusterError(
                    f"error: the postgres OS user cannot write to {self.base_dir}; "
                    "use a directory whose parents it can traverse (e.g. under /tmp)"
                )
        self.socket_dir.mkdir(exist_ok=True)
        self._chown_to_postgres(self.socket_dir)
        self.password = self.password or secrets.token_hex(16)
        pwfile = self.base_dir / "pwfile"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        self._chown_to_postgres(pwfile)
        try:
            self._run(
                [
                    self.bindir / "initdb",
                    "-D",
                    self.data_dir,
                    "-U",
                    self.user,
                    f"--pwfile={pwfile}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            )
        finally:
            pwfile.unlink(missing_ok=True)
        self._save_state()

    def _save_state(self) -> None:
        self.state_file.write_text(
            json.dumps(
                {
                    "host": self.host,
                    "port": self.port,
                    "user": self.user,
                    "password": self.password,
                    "dbname": self.dbname,
                }
            )
        )
        self.state_file.chmod(0o600)

    def is_running(self) -> bool:
        if not self.initialized:
            return False
        return (
            self._run(
                [self.bindir / "pg_ctl", "-D", self.data_dir, "status"], check=False
            ).returncode
            == 0
        )

    def start(self, timeout: int = 60) -> None:
        """initdb if needed, then start. A cluster started before keeps its port."""
        self.init()
        if self.is_running():
            return
        keep_port = self.port is not None
        attempts = 1 if keep_port else 3
        for attempt in range(attempts):
            if not keep_port:
                self.port = free_port()
            self._save_state()
            options = " ".join(
                [
                    f"-c listen_addresses={self.host}",
                    f"-c port={self.port}",
                    f"-c unix_socket_directories={shlex.quote(str(self.socket_dir))}",
                    # a test cluster: durability is not wanted, speed is
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                ]
            )
            proc = self._run(
                [
                    self.bindir / "pg_ctl",
                    "-D",
                    self.data_dir,
                    "-l",
                    self.logfile,
                    "-w",
                    "-t",
                    str(timeout),
                    "-o",
                    options,
                    "start",
                ],
                check=False,
            )
            if proc.returncode == 0:
                return
            if attempt == attempts - 1:
                raise ClusterError(
                    f"error: pg_ctl start failed (exit {proc.returncode}) on port {self.port}:\n"
                    f"{proc.stdout}{proc.stderr}{self._log_tail()}"
                )

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (the data stays; start() brings it back on the same port)."""
        if not self.is_running():
            return
        self._run([self.bindir / "pg_ctl", "-D", self.data_dir, "-m", mode, "-w", "stop"])

    def destroy(self) -> None:
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # ---------------------------------------------------------------- connecting
    def env(self, dbname: str | None = None) -> dict[str, str]:
        if self.port is None or self.password is None:
            raise ClusterError("error: the cluster has not been started")
        return {
            "POSTGRES_HOST": self.host,
            "POSTGRES_PORT": str(self.port),
            "POSTGRES_USER": self.user,
            "POSTGRES_PASSWORD": self.password,
            "POSTGRES_DB": dbname or self.dbname,
        }


def server_from_env(environ: dict[str, str] | None = None) -> dict[str, str] | None:
    """The POSTGRES_* variables of the server they name (when POSTGRES_HOST is set), else None."""
    environ = dict(os.environ if environ is None else environ)
    if not environ.get("POSTGRES_HOST"):
        return None
    return {
        "POSTGRES_HOST": environ["POSTGRES_HOST"],
        "POSTGRES_PORT": environ.get("POSTGRES_PORT", "5432"),
        "POSTGRES_USER": environ.get("POSTGRES_USER", "postgres"),
        "POSTGRES_PASSWORD": environ.get("POSTGRES_PASSWORD", ""),
        "POSTGRES_DB": environ.get("POSTGRES_DB", "postgres"),
    }


@contextlib.contextmanager
def server(prefix: str = "coincap-pg-") -> Iterator[dict[str, str]]:
    """The POSTGRES_* variables of a server where databases may be created: the one the
    environment names, else a throwaway cluster (directly under the system temp dir: as root it
    runs as `postgres`, which must reach it) removed at the end."""
    named = server_from_env()
    if named is not None:
        yield named
        return
    cluster = PostgresCluster(tempfile.mkdtemp(prefix=prefix))
    cluster.start()
    try:
        yield cluster.env()
    finally:
        cluster.destroy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "destroy", "env"])
    parser.add_argument("dir", help="the cluster's directory (created on first start)")
    args = parser.parse_args(argv)
    try:
        cluster = PostgresCluster(args.dir)
        if args.action == "start":
            cluster.start()
        elif args.action == "stop":
            cluster.stop()
            print(f"# stopped the cluster in {cluster.data_dir}", file=sys.stderr)
            return 0
        elif args.action == "destroy":
            cluster.destroy()
            return 0
        for key, value in cluster.env().items():
            print(f"export {key}={shlex.quote(value)}")
        print(f"export POSTGRES_DATA_DIR={shlex.quote(str(cluster.data_dir))}")
        return 0
    except ClusterError as exc:
        print(str(exc), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
