"""`coincap-elt doctor`'s checks that need neither a warehouse nor dbt nor CoinCap, in-process:
the report line (ok/FAIL, redacted), the schemas summary, the variables and key checks on plain
dicts, and the directory checks in a temporary directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from ingest.alerts import hide
from ingest.config import MISSING_KEY
from ingest.doctor import (
    Result,
    _guarded,
    _schemas,
    _spent,
    check_api_key,
    check_directory,
    check_schedule,
    check_variables,
    check_warehouse,
)


@pytest.fixture(autouse=True)
def no_secrets_after() -> Iterator[None]:
    hide(())
    yield
    hide(())


# --------------------------------------------------------------------------- the line
def test_a_passed_check_reads_ok_and_a_failed_one_fail_in_one_column() -> None:
    assert Result("run dir", True, "/srv/run writable").line() == "ok    run dir: /srv/run writable"
    assert Result("key", False, MISSING_KEY).line() == f"FAIL  key: {MISSING_KEY}"


def test_a_line_never_shows_a_secret_or_a_second_line() -> None:
    hide(("pg-pass-2024",))
    detail = (
        "PostgreSQL postgresql://u:pg-pass-2024@db/x unreachable:\n  FATAL: password pg-pass-2024"
    )
    line = Result("warehouse", False, detail).line()
    assert (
        line == "FAIL  warehouse: PostgreSQL postgresql://***@db/x unreachable: FATAL: password ***"
    )


def test_a_long_detail_is_cut_at_1000_characters() -> None:
    line = Result("dbt", False, "d" * 2000).line()
    assert line == "FAIL  dbt: " + "d" * 999 + "…"


# --------------------------------------------------------------------------- schemas
NONE_YET = "no schemas yet; raw, staging, marts, ops created by the first cycle"


@pytest.mark.parametrize(
    ("found", "text"),
    [
        (set(), NONE_YET),
        ({"main", "information_schema"}, NONE_YET),  # other schemas do not count
        (
            {"ops", "raw", "public"},
            "schemas raw, ops present; staging, marts created by the first cycle",
        ),
        ({"raw", "staging", "marts", "ops"}, "schemas raw, staging, marts, ops present"),
    ],
)
def test_schemas_lists_the_layouts_schemas_present_and_missing(found: set[str], text: str) -> None:
    assert _schemas(found) == text


# --------------------------------------------------------------------------- variables
def test_good_variables_are_summed_up() -> None:
    env = {
        "COINCAP_API_KEY": "key-0001",
        "WAREHOUSE": "DuckDB",
        "COINCAP_ASSET_IDS": "bitcoin,ethereum",
        "COINCAP_BACKFILL_DAYS": "3",
        "COINCAP_MONTHLY_CREDITS": "25000",
    }
    assert check_variables(env) == Result(
        "variables",
        True,
        "WAREHOUSE=duckdb, 2 assets, backfill 3 day(s), at most 100 history requests a cycle, "
        "25000 credits a month, COINCAP_API_KEY set",
    )


def test_without_a_budget_the_summary_says_so() -> None:
    result = check_variables({"COINCAP_API_KEY": "key-0001"})
    assert (
        result.ok and "10 assets" in result.detail and "no monthly credit budget" in result.detail
    )


@pytest.mark.parametrize(
    ("env", "detail"),
    [
        ({}, MISSING_KEY),
        (
            {"COINCAP_API_KEY": "k-001", "WAREHOUSE": "oracle"},
            "WAREHOUSE is 'oracle'; set it to duckdb, postgres or spark",
        ),
        (
            {"COINCAP_API_KEY": "k-001", "COINCAP_BACKFILL_DAYS": "a week"},
            "COINCAP_BACKFILL_DAYS is 'a week'; set it to a whole number of days",
        ),
    ],
)
def test_wrong_variables_fail_with_the_configurations_own_message(
    env: dict[str, str], detail: str
) -> None:
    assert check_variables(env) == Result("variables", False, detail)


# --------------------------------------------------------------------------- the key
def test_the_key_is_only_said_to_be_set_unless_asked_to_spend() -> None:
    assert check_api_key({"COINCAP_API_KEY": "key-0001"}, spend=False) == Result(
        "key", True, "set, not checked: --check-key spends one request (about 2 credits)"
    )
    assert check_api_key({}, spend=True) == Result("key", False, MISSING_KEY)


def test_what_a_key_check_spent_is_counted_from_the_meter() -> None:
    one = SimpleNamespace(meter=SimpleNamespace(requests=1, credits=2))
    two = SimpleNamespace(meter=SimpleNamespace(requests=2, credits=3))
    assert _spent(one) == "1 request, 2 credits spent"
    assert _spent(two) == "2 requests, 3 credits spent"


# --------------------------------------------------------------------------- warehouse config
def test_a_duckdb_file_not_created_yet_passes_when_its_directory_takes_files(
    tmp_path: Path,
) -> None:
    path = tmp_path / "new" / "warehouse.duckdb"
    result = check_warehouse({"DUCKDB_PATH": str(path)})
    assert result == Result(
        "warehouse",
        True,
        f"DuckDB {path} not created yet (created by the first cycle; its directory writable)",
    )
    assert not (tmp_path / "new").exists()  # doctor creates nothing
    assert list(tmp_path.iterdir()) == []


def test_a_duckdb_path_under_a_file_fails(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    path = tmp_path / "plain" / "warehouse.duckdb"
    result = check_warehouse({"DUCKDB_PATH": str(path)})
    assert result == Result(
        "warehouse",
        False,
        f"DuckDB {path}: {tmp_path / 'plain'} is not a directory; make that directory writable "
        "or set DUCKDB_PATH elsewhere",
    )


def test_a_warehouse_configuration_error_is_not_checked_further() -> None:
    result = check_warehouse({"WAREHOUSE": "postgres", "POSTGRES_DB": "x", "POSTGRES_USER": "u"})
    assert result == Result(
        "warehouse",
        False,
        "not checked: WAREHOUSE=postgres but POSTGRES_PASSWORD not set; set the POSTGRES_* "
        "variables (see .env.example)",
    )


# --------------------------------------------------------------------------- directories
def test_an_existing_directory_that_takes_files_passes_and_is_left_clean(tmp_path: Path) -> None:
    assert check_directory("run dir", tmp_path, "COINCAP_RUN_DIR") == Result(
        "run dir", True, f"{tmp_path} writable"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_directory_not_created_yet_passes_when_its_parent_takes_files(tmp_path: Path) -> None:
    path = tmp_path / "dlt" / "pipelines"
    assert check_directory("dlt data dir", path, "DLT_DATA_DIR") == Result(
        "dlt data dir", True, f"{path} writable (created by the first cycle)"
    )
    assert not path.parent.exists()


def test_a_directory_under_a_file_fails_naming_the_variable(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    path = tmp_path / "plain" / "run"
    assert check_directory("run dir", path, "COINCAP_RUN_DIR") == Result(
        "run dir",
        False,
        f"{path}: {tmp_path / 'plain'} is not a directory; set COINCAP_RUN_DIR to a directory "
        "this user can write, or give this user write access to it",
    )


# --------------------------------------------------------------------------- a broken check
def test_a_check_that_breaks_is_its_own_fail_line() -> None:
    def broken() -> Result:
        raise RuntimeError("unexpected\n  state")

    assert _guarded("dbt", broken) == Result(
        "dbt", False, "the check itself failed: unexpected state"
    )
    assert _guarded("dbt", lambda: Result("dbt", True, "fine")) == Result("dbt", True, "fine")


# --------------------------------------------------------------------------- the schedules
# check_schedule runs docker/valid-schedule.sh, the entrypoint's own check (bash, no warehouse)
def test_backup_schedule_is_checked_only_when_set() -> None:
    assert check_schedule({}) == Result(
        "schedule", True, "PIPELINE_SCHEDULE '*/5 * * * *' (the default): five cron fields"
    )
    assert check_schedule({"BACKUP_SCHEDULE": "32 3 * * *"}) == Result(
        "schedule",
        True,
        "PIPELINE_SCHEDULE '*/5 * * * *' (the default): five cron fields; "
        "BACKUP_SCHEDULE '32 3 * * *' (the default): five cron fields",
    )


@pytest.mark.parametrize("schedule", ["30 3 * *", "30 25 * * *", "@daily"])
def test_a_wrong_backup_schedule_fails_naming_the_variable(schedule: str) -> None:
    assert check_schedule({"BACKUP_SCHEDULE": schedule}) == Result(
        "schedule",
        False,
        f"BACKUP_SCHEDULE is '{schedule}'; set five cron fields such as '32 3 * * *'",
    )
    both = check_schedule({"BACKUP_SCHEDULE": schedule, "PIPELINE_SCHEDULE": "* * *"})
    assert not both.ok
    assert both.detail.startswith("PIPELINE_SCHEDULE is '* * *';")
    assert f"; BACKUP_SCHEDULE is '{schedule}';" in both.detail


# --------------------------------------------------------------------------- Spark
def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spark_env(lake: object, port: int | None = None) -> dict[str, str]:
    return {
        "WAREHOUSE": "spark",
        "RAW_BUCKET_URL": str(lake),
        "SPARK_HOST": "127.0.0.1",
        "SPARK_PORT": str(port or closed_port()),
    }


def test_a_spark_thrift_server_that_does_not_answer_fails_saying_what_to_check(
    tmp_path: Path,
) -> None:
    env = spark_env(tmp_path / "lake")
    result = check_warehouse(env)
    assert not result.ok
    assert result.detail == (
        f"Spark Thrift Server 127.0.0.1:{env['SPARK_PORT']} does not answer ([Errno 111] "
        "Connection refused); check SPARK_HOST/SPARK_PORT, is the Thrift Server running"
    )
    assert list(tmp_path.iterdir()) == []  # doctor creates no lake folder


def test_a_lake_folder_that_cannot_take_files_fails_before_spark_is_asked(
    tmp_path: Path,
) -> None:
    (tmp_path / "plain").write_text("")
    result = check_warehouse(spark_env(tmp_path / "plain" / "lake"))
    assert result == Result(
        "warehouse",
        False,
        f"RAW_BUCKET_URL {tmp_path / 'plain' / 'lake'}: {tmp_path / 'plain'} is not a "
        "directory; make it writable or set RAW_BUCKET_URL elsewhere",
    )


def test_a_lake_url_this_install_cannot_open_fails_naming_it(tmp_path: Path) -> None:
    result = check_warehouse(spark_env("nosuchfs://bucket/lake"))
    assert not result.ok
    assert result.detail.startswith(
        "RAW_BUCKET_URL nosuchfs://bucket/lake: this install cannot open nosuchfs ("
    )
    assert result.detail.endswith(
        "install dlt's extra for it (e.g. `pip install 'dlt[s3]'`) or set RAW_BUCKET_URL to a "
        "local folder or another URL"
    )


def test_a_bad_spark_port_is_the_configurations_line() -> None:
    result = check_warehouse({"WAREHOUSE": "spark", "SPARK_PORT": "ten"})
    assert result == Result(
        "warehouse", False, "not checked: SPARK_PORT is 'ten'; set it to a number"
    )
