"""The warehouse: one object for every engine, made once from the configuration (ingest/config.py).

It is what dlt loads into (`destination`), what dbt's profile reads (`dbt_env`: profiles.yml takes
the connection from these variables) and what the commands read without dlt or dbt (`reader`: a
read-only connection as `query(sql, *params)`, parameters written `%s` on every engine).

On Spark (docs/spark.md) the warehouse is two places: dlt writes `raw` (and `ops`) as Parquet files
under `raw_bucket_url`, and the Spark Thrift Server (`spark`: host, port, user) holds the tables
dbt builds and the tables over those files (macros/lake.sql registers them each build).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from ingest.logs import first_line

ENGINES = ("duckdb", "postgres", "spark")
CONNECT_TIMEOUT_S = 10

Query = Callable[..., list[tuple[Any, ...]]]


class WarehouseError(Exception):
    """The warehouse could not be opened or read. Its message is one line that says what to do."""


@dataclass(frozen=True)
class Warehouse:
    engine: str  # duckdb | postgres | spark
    duckdb_path: Path  # absolute; used when engine is duckdb
    postgres: dict[str, str]  # host, port, database, username, password
    spark: dict[str, str] = field(default_factory=dict)  # host, port, user (Thrift Server)
    # spark: where dlt writes raw's Parquet files, a URL dlt's filesystem destination takes
    # (an absolute local folder as file:// URL, s3://..., gs://..., az://...)
    raw_bucket_url: str = ""

    def __str__(self) -> str:
        if self.engine == "duckdb":
            return f"DuckDB {self.duckdb_path}"
        if self.engine == "spark":
            sp = self.spark
            return f"Spark {sp['host']}:{sp['port']} (raw files in {self.raw_bucket_url})"
        pg = self.postgres
        return f"PostgreSQL {pg['username']}@{pg['host']}:{pg['port']}/{pg['database']}"

    @property
    def location(self) -> str:
        """The file (DuckDB) or `user@host:port/database` (PostgreSQL), for reports."""
        if self.engine == "spark":
            return f"{self.spark['host']}:{self.spark['port']}"
        return str(self.duckdb_path) if self.engine == "duckdb" else str(self).split(" ", 1)[1]

    def exists(self) -> bool:
        """False only for a DuckDB file not created yet (a server is assumed to be there)."""
        return self.engine != "duckdb" or self.duckdb_path.exists()

    # ---------------------------------------------------------------- dlt and dbt
    def destination(self) -> Any:
        """dlt's destination for this warehouse."""
        import dlt

        if self.engine == "duckdb":
            self.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
            return dlt.destinations.duckdb(credentials=str(self.duckdb_path))
        if self.engine == "spark":
            # Parquet files, append-only: plain Parquet has no merge (dlt appends instead), so
            # staging keeps one row per key (docs/spark.md)
            return dlt.destinations.filesystem(bucket_url=self.raw_bucket_url)
        return dlt.destinations.postgres(
            credentials=dict(self.postgres, port=int(self.postgres["port"])),
            # No UNIQUE constraint on `_dlt_id`: a cycle killed after a job committed but before
            # dlt marked it done re-runs the job, and that constraint would refuse the rows in
            # every later cycle (docs/reliability.md). The merges dedup by their keys; marts are
            # keyed by dbt.
            create_indexes=False,
        )

    @property
    def loader_file_format(self) -> str | None:
        """The file format dlt loads with: Parquet on Spark, the destination's own elsewhere."""
        return "parquet" if self.engine == "spark" else None

    @property
    def raw_write_disposition(self) -> str:
        """How dlt writes raw's keyed tables (assets, asset_history): merged by their keys, or
        appended on Spark (plain Parquet has no merge; staging keeps one row per key)."""
        return "append" if self.engine == "spark" else "merge"

    @property
    def spark_raw_location(self) -> str:
        """raw_bucket_url as Spark's Hadoop file systems name it (s3:// is s3a:// there)."""
        url = self.raw_bucket_url
        return "s3a://" + url[len("s3://") :] if url.startswith("s3://") else url

    def dbt_env(self) -> dict[str, str]:
        """The variables profiles/profiles.yml reads, normalised (WAREHOUSE lower-case, an
        absolute DUCKDB_PATH): what dbt connects with is exactly what dlt loaded into."""
        env = {"WAREHOUSE": self.engine, "DUCKDB_PATH": str(self.duckdb_path)}
        if self.engine == "spark":
            env.update(
                SPARK_HOST=self.spark["host"],
                SPARK_PORT=self.spark["port"],
                SPARK_USER=self.spark["user"],
                SPARK_RAW_LOCATION=self.spark_raw_location,
            )
        if self.engine == "postgres":
            pg = self.postgres
            env.update(
                POSTGRES_HOST=pg["host"],
                POSTGRES_PORT=pg["port"],
                POSTGRES_DB=pg["database"],
                POSTGRES_USER=pg["username"],
                POSTGRES_PASSWORD=pg["password"],
            )
        return env

    # ---------------------------------------------------------------- reading without dlt
    def connect_postgres(self, application_name: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Any:
        """A psycopg2 connection (raises psycopg2.Error when the server refuses it)."""
        import psycopg2

        pg = self.postgres
        return psycopg2.connect(
            host=pg["host"],
            port=int(pg["port"]),
            dbname=pg["database"],
            user=pg["username"],
            password=pg["password"],
            connect_timeout=timeout_s,
            application_name=application_name,
        )

    @contextmanager
    def reader(self, application_name: str = "coincap-elt") -> Iterator[Query]:
        """A read-only connection as `query(sql, *params)`, closed at the end. Raises
        WarehouseError (one line) when the warehouse is missing, busy or unreachable. A DuckDB
        reader keeps a cycle from opening the file: hold the cycle lock around it."""
        if self.engine == "duckdb":
            with self._duckdb_reader() as query:
                yield query
        elif self.engine == "spark":
            with self.spark_session() as query:
                yield query
        else:
            with self._postgres_reader(application_name) as query:
                yield query

    @contextmanager
    def cycle_reader(self, application_name: str = "coincap-elt") -> Iterator[Query]:
        """`reader` for a process that also writes the warehouse (a cycle, a backfill): DuckDB
        refuses a read-only connection to a file the process holds open read-write (dbt, dlt),
        so there it is an ordinary connection, which only reads. Hold the cycle lock."""
        if self.engine != "duckdb":
            with self.reader(application_name) as query:
                yield query
            return
        with self._duckdb_reader(read_only=False) as query:
            yield query

    def relations(self, query: Query, schemas: tuple[str, ...]) -> set[str]:
        """The tables and views of `schemas` that exist, as `schema.table`: information_schema
        on DuckDB and PostgreSQL; Spark has none, so its catalogue's SHOW statements."""
        if self.engine != "spark":
            listed = ", ".join("'" + schema + "'" for schema in schemas)
            rows = query(
                "select table_schema, table_name from information_schema.tables "
                f"where table_schema in ({listed})"
            )
            return {f"{schema}.{name}" for schema, name in rows}
        found = {row[0] for row in query("show databases")}
        return {
            f"{schema}.{row[1]}"
            for schema in schemas
            if schema in found
            for row in query(f"show tables in {schema}")
            if not row[2]  # a session's temporary view belongs to no schema
        }

    @contextmanager
    def _duckdb_reader(self, read_only: bool = True) -> Iterator[Query]:
        import duckdb

        path = self.duckdb_path
        if not path.exists():
            raise WarehouseError(
                f"the warehouse {path} (DUCKDB_PATH) does not exist yet; run a cycle first "
                "(coincap-elt run) or point DUCKDB_PATH at the warehouse file"
            )
        try:
            conn = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            if "lock" in str(exc).lower():
                raise WarehouseError(
                    f"the warehouse {path} is busy (a cycle is writing to it; DuckDB lets no "
                    "other process open it meanwhile); try again in a minute"
                ) from exc
            raise WarehouseError(
                f"the warehouse {path} could not be opened ({first_line(exc)}); check DUCKDB_PATH"
            ) from exc
        try:
            yield lambda sql, *params: conn.execute(sql.replace("%s", "?"), params).fetchall()
        except duckdb.Error as exc:
            raise WarehouseError(
                f"the warehouse {path} could not be read ({first_line(exc)})"
            ) from exc
        finally:
            conn.close()

    @contextmanager
    def _postgres_reader(self, application_name: str) -> Iterator[Query]:
        import psycopg2

        where = str(self)
        try:
            conn = self.connect_postgres(application_name)
        except psycopg2.Error as exc:
            raise WarehouseError(
                f"the warehouse ({where}) is unreachable: {first_line(exc)}; check that it "
                "runs and the POSTGRES_* settings"
            ) from exc
        try:
            conn.set_session(readonly=True, autocommit=True)
            with conn.cursor() as cursor:

                def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
                    cursor.execute(sql, params or None)
                    return cursor.fetchall()

                yield query
        except psycopg2.Error as exc:
            raise WarehouseError(
                f"the warehouse ({where}) could not be read: {first_line(exc)}"
            ) from exc
        finally:
            conn.close()

    @contextmanager
    def spark_session(self) -> Iterator[Query]:
        """A session on the Spark Thrift Server as `query(sql, *params)` (statements without rows
        return []), in UTC. Raises WarehouseError (one line) when it is unreachable or a
        statement fails. Not read-only: Spark's Thrift Server has no such session."""
        import socket

        try:
            from pyhive import exc as hive_errors
            from pyhive import hive
            from thrift.Thrift import TException
        except ImportError as exc:
            raise WarehouseError(
                f"WAREHOUSE=spark needs PyHive ({exc.name} is not installed); install the spark "
                "extra: pip install '.[spark]'"
            ) from exc

        where = str(self)
        try:
            # PyHive waits without a limit for a host that does not answer: a probe with one
            socket.create_connection(
                (self.spark["host"], int(self.spark["port"])), timeout=CONNECT_TIMEOUT_S
            ).close()
            conn = hive.connect(
                host=self.spark["host"],
                port=int(self.spark["port"]),
                username=self.spark["user"],
                configuration={"spark.sql.session.timeZone": "UTC"},
            )
        except (TException, OSError, hive_errors.Error) as exc:
            raise WarehouseError(
                f"the Spark Thrift Server ({self.location}) is unreachable: {first_line(exc)}; "
                "check that it runs and SPARK_HOST/SPARK_PORT"
            ) from exc
        try:
            cursor = conn.cursor()

            def query(sql: str, *params: Any) -> list[tuple[Any, ...]]:
                cursor.execute(sql % _spark_params(params) if params else sql)
                rows = cursor.fetchall() if cursor.description else []
                return [tuple(map(_spark_value, row)) for row in rows]

            yield query
        except (TException, OSError, hive_errors.Error) as exc:
            raise WarehouseError(
                f"the warehouse ({where}) could not be read: {_hive_message(exc)}"
            ) from exc
        finally:
            # The statements are done: a session the server fails to close (Spark 4's Thrift
            # Server without Hive's LLAP jars may, docs/spark.md) loses nothing
            with suppress(TException, OSError, hive_errors.Error):
                conn.close()


def _spark_params(params: tuple[Any, ...]) -> tuple[Any, ...]:
    """The parameters as Spark SQL literals: PyHive's quoting, plus a time with a zone as UTC
    (the session's; PyHive would drop the offset) and a Decimal as a decimal literal (PyHive
    refuses it)."""
    from pyhive.hive import HiveParamEscaper

    class Escaper(HiveParamEscaper):
        def escape_item(self, item: Any) -> Any:
            if isinstance(item, Decimal) and item.is_finite():
                return str(item)
            if isinstance(item, datetime) and item.tzinfo is not None:
                item = item.astimezone(UTC).replace(tzinfo=None)
            return super().escape_item(item)

    return Escaper().escape_args(params)


def _spark_value(value: Any) -> Any:
    """A value as the other engines' readers return it: Spark's timestamps come back without
    a time zone, in the session's (UTC); the others give them with UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _hive_message(exc: BaseException) -> str:
    """The first line of what Spark said, without the Thrift envelope around it."""
    status = getattr(getattr(exc, "args", [None])[0], "status", None)
    message = getattr(status, "errorMessage", None) or str(exc)
    return first_line(message.replace("org.apache.hive.service.cli.HiveSQLException: ", ""))
