"""A throwaway Spark cluster for the tests, for CI and for trying `WAREHOUSE=spark` on a laptop.

Three Java processes from the ``pyspark`` wheel (the ``.[dev]`` extra ships Spark's jars), all
bound to 127.0.0.1 on free ports, all living in one directory (``DIR``):

    a standalone Master      (org.apache.spark.deploy.master.Master)
    a Worker                 (org.apache.spark.deploy.worker.Worker), DIR/work
    the Spark Thrift Server  (HiveThriftServer2, the HiveServer2 protocol dbt-spark and PyHive
                              speak), an application on that master; its metastore is Derby in
                              DIR/metastore_db and its tables' files are under DIR/warehouse

    DIR/*.log                each process's log
    DIR/cluster.json         the ports and pids, so ``stop`` finds them

Java 17 must be installed (``sudo apt-get install -y openjdk-17-jre-headless``); ``java_home()``
says where it is or None.

As a library::

    cluster = SparkCluster(path)
    cluster.start()        # about 30 s: master, worker, then the Thrift Server answering
    cluster.env()          # {"SPARK_HOST": "127.0.0.1", "SPARK_PORT": "...", ...}
    cluster.stop()

As a CLI::

    eval "$(python -m devkit.spark_cluster start DIR)"    # prints export lines
    python -m devkit.spark_cluster stop DIR
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOST = "127.0.0.1"
JAVA_INSTALL_HINT = "sudo apt-get install -y openjdk-17-jre-headless"
SPARK_INSTALL_HINT = "`make install` (the dev extra brings pyspark; `.[spark]` has no pyspark)"
DEBIAN_JAVA_17 = Path("/usr/lib/jvm/java-17-openjdk-amd64")
START_TIMEOUT_S = 180
# Small on purpose: the cluster shares a 2-core machine with the rest of the suite.
WORKER_CORES = 2
WORKER_MEMORY = "1536m"
DRIVER_MEMORY = "768m"
# Every connection's session: UTC (the marts' dates are UTC dates) and few shuffle partitions
# (Spark's default of 200 makes a small build spend its time scheduling empty tasks).
SESSION_CONF = {
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.shuffle.partitions": "4",
}


class SparkClusterError(RuntimeError):
    """The cluster could not be started or stopped; the message says why."""


def java_home() -> Path | None:
    """Java 17's home: Debian's openjdk-17 when installed, else JAVA_HOME, else the `java` on
    PATH. None when there is no Java at all."""
    if (DEBIAN_JAVA_17 / "bin" / "java").exists():
        return DEBIAN_JAVA_17
    if os.environ.get("JAVA_HOME") and Path(os.environ["JAVA_HOME"], "bin", "java").exists():
        return Path(os.environ["JAVA_HOME"])
    java = shutil.which("java")
    return Path(java).resolve().parent.parent if java else None


def spark_home() -> Path | None:
    """The pyspark wheel's directory (bin/spark-class, jars/), or None without pyspark."""
    try:
        from pyspark.find_spark_home import _find_spark_home
    except ImportError:
        return None
    return Path(_find_spark_home())


def missing() -> str | None:
    """What this machine lacks to start a cluster, as the line that says how to install it."""
    if java_home() is None:
        return f"Java 17 is not installed; install it with: {JAVA_INSTALL_HINT}"
    if spark_home() is None:
        return f"pyspark is not installed; install it with {SPARK_INSTALL_HINT}"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


class SparkCluster:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path).resolve()
        self.state_file = self.path / "cluster.json"
        self.state: dict = (
            json.loads(self.state_file.read_text()) if self.state_file.exists() else {}
        )

    # ------------------------------------------------------------------ start
    def _environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            JAVA_HOME=str(java_home()),
            SPARK_HOME=str(spark_home()),
            SPARK_LOCAL_IP=HOST,
            SPARK_LOCAL_DIRS=str(self.path / "tmp"),
            SPARK_LOG_DIR=str(self.path),
            SPARK_CONF_DIR=str(self.path / "conf"),
            SPARK_NO_DAEMONIZE="1",
            TZ="UTC",
        )
        env.pop("PYSPARK_PYTHON", None)
        return env

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> int:
        log = open(self.path / f"{name}.log", "ab")  # noqa: SIM115 (the child keeps it)
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=self.path,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() kills the JVM's children too
        )
        log.close()
        return proc.pid

    def _wait_for(self, name: str, port: int, pid: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            if _listening(port):
                return
            if not _alive(pid):
                raise SparkClusterError(
                    f"the Spark {name} exited while starting; see {self.path / (name + '.log')}"
                )
            time.sleep(0.5)
        raise SparkClusterError(
            f"the Spark {name} did not answer on {HOST}:{port} within {START_TIMEOUT_S} s; "
            f"see {self.path / (name + '.log')}"
        )

    def start(self) -> None:
        reason = missing()
        if reason:
            raise SparkClusterError(reason)
        if self.running():
            return
        for sub in ("tmp", "conf", "work", "warehouse"):
            (self.path / sub).mkdir(parents=True, exist_ok=True)
        (self.path / "conf" / "log4j2.properties").write_text(_LOG4J)
        env = self._environment()
        spark = spark_home()
        ports = {name: _free_port() for name in ("master", "master_ui", "worker_ui", "thrift")}
        self.state = {"ports": ports, "pids": {}}
        deadline = time.monotonic() + START_TIMEOUT_S
        master_url = f"spark://{HOST}:{ports['master']}"
        spark_class = str(spark / "bin" / "spark-class")
        self.state["pids"]["master"] = self._spawn(
            "master",
            [spark_class, "org.apache.spark.deploy.master.Master", "--host", HOST,
             "--port", str(ports["master"]), "--webui-port", str(ports["master_ui"])],
            env,
        )  # fmt: skip
        self._save()
        self._wait_for("master", ports["master"], self.state["pids"]["master"], deadline)
        self.state["pids"]["worker"] = self._spawn(
            "worker",
            [spark_class, "org.apache.spark.deploy.worker.Worker", master_url, "--host", HOST,
             "--cores", str(WORKER_CORES), "--memory", WORKER_MEMORY,
             "--webui-port", str(ports["worker_ui"]), "--work-dir", str(self.path / "work")],
            env,
        )  # fmt: skip
        self._save()
        metastore = self.path / "metastore_db"
        conf = {
            "spark.master": master_url,
            "spark.driver.host": HOST,
            "spark.driver.memory": DRIVER_MEMORY,
            "spark.executor.memory": "1g",
            "spark.cores.max": str(WORKER_CORES),
            "spark.ui.enabled": "false",
            "spark.sql.warehouse.dir": str(self.path / "warehouse"),
            "spark.hadoop.javax.jdo.option.ConnectionURL": (
                f"jdbc:derby:;databaseName={metastore};create=true"
            ),
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={self.path}",
            **SESSION_CONF,
        }
        stub = self.path / "conf" / "hive-get-splits-stub.jar"
        write_get_splits_stub(stub)
        argv = [str(spark / "bin" / "spark-submit"), "--class",
                "org.apache.spark.sql.hive.thriftserver.HiveThriftServer2",
                "--name", "coincap-elt Thrift Server",
                "--driver-class-path", str(stub)]  # fmt: skip
        for key, value in conf.items():
            argv += ["--conf", f"{key}={value}"]
        argv += [
            "--hiveconf", f"hive.server2.thrift.port={ports['thrift']}",
            "--hiveconf", f"hive.server2.thrift.bind.host={HOST}",
            "spark-internal",
        ]  # fmt: skip
        self.state["pids"]["thrift"] = self._spawn("thrift", argv, env)
        self._save()
        self._wait_for("thrift", ports["thrift"], self.state["pids"]["thrift"], deadline)

    def _save(self) -> None:
        self.state_file.write_text(json.dumps(self.state, indent=2))

    # ------------------------------------------------------------------ use
    def running(self) -> bool:
        pids = self.state.get("pids", {})
        return bool(pids) and all(_alive(pid) for pid in pids.values()) and "thrift" in pids

    @property
    def thrift_port(self) -> int:
        return int(self.state["ports"]["thrift"])

    @property
    def warehouse_dir(self) -> Path:
        return self.path / "warehouse"

    def env(self) -> dict[str, str]:
        """The settings a cycle needs to use this cluster (docs/spark.md)."""
        return {"SPARK_HOST": HOST, "SPARK_PORT": str(self.thrift_port)}

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """Stops the Thrift Server, the worker and the master (SIGTERM to each process group,
        SIGKILL after 20 s)."""
        pids = self.state.get("pids", {})
        for name in ("thrift", "worker", "master"):
            if name in pids:
                _terminate(pids[name])
        self.state["pids"] = {}
        if self.state_file.parent.exists():
            self._save()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.path, ignore_errors=True)


def write_get_splits_stub(path: Path) -> None:
    """A jar with one class, an empty stand-in for Hive's `GenericUDTFGetSplits`, put before
    Spark's jars on the Thrift Server's class path.

    Why: the pyspark wheel's Spark 4 no longer ships Hive's LLAP jars, which the real class needs.
    When the Thrift Server closes a session it sometimes builds a Hive client that registers
    Hive's built-in functions; `get_splits` is one of them, its class cannot load, the close
    fails (dbt-spark fails that node: `NoClassDefFoundError: ...LlapSigner$Signable`), and the
    next such close waits forever (Hive leaves its registration "pending"). With the stand-in
    the registration succeeds once and for all. `get_splits` is an LLAP-only function nobody
    calls here. The class file is written byte by byte (a public class extending GenericUDTF
    with a constructor calling its parent's), so no Java compiler is needed."""
    import struct
    import zipfile

    def utf8(text: str) -> bytes:
        return b"\x01" + struct.pack(">H", len(text)) + text.encode()

    name = "org/apache/hadoop/hive/ql/udf/generic/GenericUDTFGetSplits"
    parent = "org/apache/hadoop/hive/ql/udf/generic/GenericUDTF"
    constants = [
        utf8(name),  # 1
        b"\x07" + struct.pack(">H", 1),  # 2: this class
        utf8(parent),  # 3
        b"\x07" + struct.pack(">H", 3),  # 4: the parent class
        utf8("<init>"),  # 5
        utf8("()V"),  # 6
        b"\x0c" + struct.pack(">HH", 5, 6),  # 7: name and type <init>()V
        b"\x0a" + struct.pack(">HH", 4, 7),  # 8: the parent's <init>()V
        utf8("Code"),  # 9
    ]
    code = bytes([0x2A, 0xB7, 0x00, 0x08, 0xB1])  # aload_0; invokespecial #8; return
    code_attribute = struct.pack(">HHI", 1, 1, len(code)) + code + struct.pack(">HH", 0, 0)
    constructor = struct.pack(">HHHH", 0x0001, 5, 6, 1) + struct.pack(">HI", 9, len(code_attribute))
    class_file = (
        b"\xca\xfe\xba\xbe"
        + struct.pack(">HHH", 0, 52, len(constants) + 1)  # Java 8 class file
        + b"".join(constants)
        + struct.pack(">HHHHHH", 0x0021, 2, 4, 0, 0, 1)  # public; no interfaces or fields
        + constructor
        + code_attribute
        + struct.pack(">H", 0)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as jar:
        jar.writestr(name + ".class", class_file)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child (not reaped yet) counts as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _terminate(pid: int, timeout_s: float = 20) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        if not _alive(pid):
            return
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# Spark's own log4j2 defaults print every INFO line; the logs keep warnings and errors.
_LOG4J = """\
rootLogger.level = warn
rootLogger.appenderRef.stdout.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{yy/MM/dd HH:mm:ss} %p %c{1}: %m%n%ex
logger.thriftserver.name = org.apache.spark.sql.hive.thriftserver
logger.thriftserver.level = info
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    cluster = SparkCluster(args.dir)
    try:
        if args.action == "start":
            began = time.monotonic()
            cluster.start()
            print(f"# Spark cluster ready in {time.monotonic() - began:.0f} s", file=sys.stderr)
            for key, value in cluster.env().items():
                print(f"export {key}={shlex.quote(value)}")
        else:
            cluster.stop()
    except SparkClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
