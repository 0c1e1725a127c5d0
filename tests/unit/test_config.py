"""ingest/config.py in-process: Settings.from_env on plain dicts (defaults, normalisation, every
refusal as one ConfigError line naming the variable), the secrets list, and what the Warehouse
hands dbt's profile. No warehouse is opened."""

from __future__ import annotations

from pathlib import Path

import pytest

from ingest.coincap.settings import (
    DEFAULT_BACKFILL_DAYS,
    DEFAULT_BASE_URL,
    DEFAULT_MAX_HISTORY_REQUESTS,
    REQUEST_TIMEOUT_S,
)
from ingest.config import (
    DEFAULT_BACKUP_MAX_AGE_HOURS,
    DEFAULT_BACKUP_SCHEDULE,
    DEFAULT_SCHEDULE,
    MISSING_KEY,
    ConfigError,
    Settings,
    asset_ids_from,
    backup_max_age_hours_from,
    backup_schedule_from,
    home_from,
    schedule_from,
    secrets_from,
    warehouse_from,
)

POSTGRES = {
    "WAREHOUSE": "postgres",
    "POSTGRES_HOST": "db.internal",
    "POSTGRES_PORT": "6543",
    "POSTGRES_DB": "coincap",
    "POSTGRES_USER": "pipeline",
    "POSTGRES_PASSWORD": "pg-secret-1",
}


def refusal(env: dict[str, str]) -> str:
    """The ConfigError line Settings.from_env raises for `env`."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    message = str(caught.value)
    assert "\n" not in message
    return message


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Relative paths resolve against a known directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path.resolve()


# --------------------------------------------------------------------------- defaults
def test_an_empty_environment_gives_the_documented_defaults(in_tmp: Path) -> None:
    settings = Settings.from_env({})
    assert settings.api_key == ""
    assert settings.base_url == DEFAULT_BASE_URL == "https://rest.coincap.io/v3"
    assert settings.asset_ids == (
        "bitcoin",
        "ethereum",
        "cosmos",
        "solana",
        "algorand",
        "cardano",
        "uniswap",
        "dogecoin",
        "litecoin",
        "polkadot",
    )
    assert settings.warehouse.engine == "duckdb"
    assert settings.warehouse.duckdb_path == in_tmp / "data" / "warehouse.duckdb"
    assert settings.backfill_days == DEFAULT_BACKFILL_DAYS == 7
    assert settings.max_history_requests == DEFAULT_MAX_HISTORY_REQUESTS == 100
    assert settings.monthly_credits is None
    assert settings.request_timeout_s == REQUEST_TIMEOUT_S == 15.0
    assert settings.pipelines_dir == in_tmp / "data" / "dlt" / "pipelines"
    assert settings.run_dir == in_tmp / "data"
    assert settings.alert_webhook_url == ""
    assert settings.docs_dir is None
    assert schedule_from({}) == DEFAULT_SCHEDULE == "*/5 * * * *"
    assert settings.secrets == ()


def test_home_defaults_to_the_checkout_and_dbt_target_follows_it(tmp_path: Path) -> None:
    checkout = Path(__file__).resolve().parents[2]
    assert home_from({}) == checkout
    assert Settings.from_env({}).dbt_target_path == checkout / "dbt_project" / "target"
    moved = Settings.from_env({"COINCAP_HOME": str(tmp_path)})
    assert home_from({"COINCAP_HOME": str(tmp_path)}) == tmp_path.resolve()
    assert moved.dbt_target_path == tmp_path.resolve() / "dbt_project" / "target"


def test_paths_are_made_absolute(in_tmp: Path) -> None:
    settings = Settings.from_env(
        {
            "DUCKDB_PATH": "wh/prices.duckdb",
            "DLT_DATA_DIR": "state",
            "COINCAP_RUN_DIR": "run",
            "DBT_DOCS_DIR": "site",
            "DBT_TARGET_PATH": "/tmp/target",
        }
    )
    assert settings.warehouse.duckdb_path == in_tmp / "wh" / "prices.duckdb"
    assert settings.pipelines_dir == in_tmp / "state" / "pipelines"
    assert settings.run_dir == in_tmp / "run"
    assert settings.docs_dir == in_tmp / "site"
    assert settings.dbt_target_path == Path("/tmp/target").resolve()


def test_blank_values_count_as_unset() -> None:
    settings = Settings.from_env(
        {
            "COINCAP_BASE_URL": "  ",
            "WAREHOUSE": " ",
            "COINCAP_BACKFILL_DAYS": "",
            "COINCAP_REQUEST_TIMEOUT_S": " ",
            "PIPELINE_SCHEDULE": "",
        }
    )
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.warehouse.engine == "duckdb"
    assert settings.backfill_days == 7
    assert settings.request_timeout_s == 15.0
    assert schedule_from({"PIPELINE_SCHEDULE": ""}) == DEFAULT_SCHEDULE


def test_values_are_stripped() -> None:
    settings = Settings.from_env(
        {
            "COINCAP_API_KEY": "  the-key \n",
            "COINCAP_BASE_URL": " http://localhost:8080/v3 ",
            "ALERT_WEBHOOK_URL": " https://hooks.example/T1 ",
            "PIPELINE_SCHEDULE": " 0 * * * * ",
        }
    )
    assert settings.api_key == "the-key"
    assert settings.base_url == "http://localhost:8080/v3"
    assert settings.alert_webhook_url == "https://hooks.example/T1"
    assert schedule_from({"PIPELINE_SCHEDULE": " 0 * * * * "}) == "0 * * * *"


# --------------------------------------------------------------------------- WAREHOUSE
@pytest.mark.parametrize(
    ("given", "engine"),
    [
        ("duckdb", "duckdb"),
        ("DuckDB", "duckdb"),
        (" POSTGRES ", "postgres"),
        ("Postgres", "postgres"),
    ],
)
def test_warehouse_name_is_case_insensitive(given: str, engine: str) -> None:
    env = {**POSTGRES, "WAREHOUSE": given}
    assert Settings.from_env(env).warehouse.engine == engine


@pytest.mark.parametrize("given", ["oracle", "sqlite", "postgresql", "duck db"])
def test_an_unknown_warehouse_is_refused_naming_the_variable(given: str) -> None:
    assert refusal({"WAREHOUSE": given}) == (
        f"WAREHOUSE is {given!r}; set it to duckdb, postgres or spark"
    )


@pytest.mark.parametrize(
    ("unset", "named"),
    [
        (("POSTGRES_DB",), "POSTGRES_DB"),
        (("POSTGRES_PASSWORD",), "POSTGRES_PASSWORD"),
        (
            ("POSTGRES_DB", "POSTGRES_USER", "POSTGRES_PASSWORD"),
            "POSTGRES_DB, POSTGRES_USER, POSTGRES_PASSWORD",
        ),
    ],
)
def test_postgres_without_its_settings_is_refused_naming_them(
    unset: tuple[str, ...], named: str
) -> None:
    env = {k: v for k, v in POSTGRES.items() if k not in unset}
    assert refusal(env) == (
        f"WAREHOUSE=postgres but {named} not set; set the POSTGRES_* variables (see .env.example)"
    )


def test_postgres_settings_are_not_required_on_duckdb() -> None:
    assert Settings.from_env({"WAREHOUSE": "duckdb"}).warehouse.engine == "duckdb"


@pytest.mark.parametrize("port", ["five", "54.32", "-1", "٥٤٣٢"])
def test_a_postgres_port_that_is_not_a_number_is_refused(port: str) -> None:
    assert refusal({**POSTGRES, "POSTGRES_PORT": port}) == (
        f"POSTGRES_PORT is {port!r}; set it to a number"
    )


def test_postgres_host_and_port_have_defaults() -> None:
    env = {k: v for k, v in POSTGRES.items() if k not in ("POSTGRES_HOST", "POSTGRES_PORT")}
    postgres = warehouse_from(env).postgres
    assert (postgres["host"], postgres["port"]) == ("localhost", "5432")


# --------------------------------------------------------------------------- COINCAP_ASSET_IDS
def test_asset_ids_are_lower_cased_without_repeats_in_their_order() -> None:
    env = {"COINCAP_ASSET_IDS": " Solana,BITCOIN , solana,,ethereum,bitcoin "}
    assert asset_ids_from(env) == ("solana", "bitcoin", "ethereum")


@pytest.mark.parametrize("given", ["", " ", ",", " , ,"])
def test_empty_asset_ids_are_refused(given: str) -> None:
    assert refusal({"COINCAP_ASSET_IDS": given}) == (
        "COINCAP_ASSET_IDS is empty; set comma-separated CoinCap asset ids"
    )


# --------------------------------------------------------------------------- whole numbers
WHOLE_NUMBERS = [
    ("COINCAP_BACKFILL_DAYS", "days"),
    ("COINCAP_MAX_HISTORY_REQUESTS", "requests per cycle"),
    ("COINCAP_MONTHLY_CREDITS", "credits a month"),
]


@pytest.mark.parametrize(("name", "unit"), WHOLE_NUMBERS)
@pytest.mark.parametrize("value", ["a week", "-1", "1.5", "٣", "1e3", "0x10"])
def test_whole_number_variables_refuse_anything_else(name: str, unit: str, value: str) -> None:
    assert refusal({name: value}) == f"{name} is {value!r}; set it to a whole number of {unit}"


def test_whole_number_variables_are_read_as_integers() -> None:
    settings = Settings.from_env(
        {
            "COINCAP_BACKFILL_DAYS": " 30 ",
            "COINCAP_MAX_HISTORY_REQUESTS": "0",
            "COINCAP_MONTHLY_CREDITS": "25000",
        }
    )
    assert settings.backfill_days == 30
    assert settings.max_history_requests == 0
    assert settings.monthly_credits == 25000


def test_a_monthly_credit_budget_of_zero_means_none() -> None:
    assert Settings.from_env({"COINCAP_MONTHLY_CREDITS": "0"}).monthly_credits is None


# --------------------------------------------------------------------------- the timeout
@pytest.mark.parametrize(("given", "seconds"), [("0.5", 0.5), ("120", 120.0), (" 30 ", 30.0)])
def test_request_timeout_within_bounds_is_accepted(given: str, seconds: float) -> None:
    assert Settings.from_env({"COINCAP_REQUEST_TIMEOUT_S": given}).request_timeout_s == seconds


@pytest.mark.parametrize("given", ["0", "-5", "120.5", "600", "soon", "nan", "inf"])
def test_request_timeout_out_of_bounds_is_refused(given: str) -> None:
    assert refusal({"COINCAP_REQUEST_TIMEOUT_S": given}) == (
        f"COINCAP_REQUEST_TIMEOUT_S is {given!r}; set it to seconds, more than 0 and at most 120"
    )


# --------------------------------------------------------------------------- the key
def test_require_api_key_returns_the_key() -> None:
    assert Settings.from_env({"COINCAP_API_KEY": "abc123"}).require_api_key() == "abc123"


def test_require_api_key_refuses_a_missing_key_saying_how_to_get_one() -> None:
    settings = Settings.from_env({"COINCAP_API_KEY": "   "})
    with pytest.raises(ConfigError) as caught:
        settings.require_api_key()
    assert str(caught.value) == MISSING_KEY
    assert "https://pro.coincap.io/dashboard" in MISSING_KEY
    assert MISSING_KEY.startswith("COINCAP_API_KEY is not set; ")


def test_a_missing_key_does_not_stop_reading_the_settings() -> None:
    # the run log and `status` still run without a key: only require_api_key() refuses
    assert Settings.from_env({}).api_key == ""


# --------------------------------------------------------------------------- secrets
def test_secrets_are_the_set_values_of_the_secret_variables() -> None:
    env = {
        "COINCAP_API_KEY": " key-0001 ",
        "POSTGRES_PASSWORD": "pg-pass",
        "ALERT_WEBHOOK_URL": "https://hooks.example/T1/B2",
        "METABASE_ADMIN_PASSWORD": "",
        "POSTGRES_USER": "not-a-secret",
        "COINCAP_ASSET_IDS": "bitcoin",
    }
    assert secrets_from(env) == ("key-0001", "pg-pass", "https://hooks.example/T1/B2")


def test_secrets_shorter_than_four_characters_are_left_out() -> None:
    # replacing "a" or "pw" everywhere would mangle every message
    assert secrets_from({"COINCAP_API_KEY": "abc", "POSTGRES_PASSWORD": "abcd"}) == ("abcd",)


def test_settings_carry_the_secrets_but_do_not_print_them() -> None:
    settings = Settings.from_env({"COINCAP_API_KEY": "very-secret-key"})
    assert settings.secrets == ("very-secret-key",)
    assert "secrets=" not in repr(settings)


# --------------------------------------------------------------------------- the Warehouse
def test_duckdb_warehouse_gives_dbt_the_engine_and_the_absolute_path(in_tmp: Path) -> None:
    warehouse = Settings.from_env({"WAREHOUSE": "DuckDB", "DUCKDB_PATH": "x/w.duckdb"}).warehouse
    assert warehouse.dbt_env() == {
        "WAREHOUSE": "duckdb",
        "DUCKDB_PATH": str(in_tmp / "x" / "w.duckdb"),
    }
    assert warehouse.location == str(in_tmp / "x" / "w.duckdb")
    assert str(warehouse) == f"DuckDB {in_tmp / 'x' / 'w.duckdb'}"


def test_postgres_warehouse_gives_dbt_the_normalised_connection(in_tmp: Path) -> None:
    env = {**POSTGRES, "WAREHOUSE": " Postgres", "POSTGRES_HOST": " db.internal "}
    warehouse = Settings.from_env(env).warehouse
    assert warehouse.dbt_env() == {
        "WAREHOUSE": "postgres",
        "DUCKDB_PATH": str(in_tmp / "data" / "warehouse.duckdb"),
        "POSTGRES_HOST": "db.internal",
        "POSTGRES_PORT": "6543",
        "POSTGRES_DB": "coincap",
        "POSTGRES_USER": "pipeline",
        "POSTGRES_PASSWORD": "pg-secret-1",
    }
    assert warehouse.location == "pipeline@db.internal:6543/coincap"
    assert str(warehouse) == "PostgreSQL pipeline@db.internal:6543/coincap"
    assert "pg-secret-1" not in str(warehouse)


def test_a_duckdb_file_not_created_yet_does_not_exist_and_a_server_is_assumed(
    in_tmp: Path,
) -> None:
    duckdb = Settings.from_env({}).warehouse
    assert not duckdb.exists()
    (in_tmp / "data").mkdir()
    (in_tmp / "data" / "warehouse.duckdb").touch()
    assert duckdb.exists()
    assert Settings.from_env(POSTGRES).warehouse.exists()


# --------------------------------------------------------------------------- Spark
def test_spark_has_defaults_for_its_server_and_a_local_lake_folder(in_tmp: Path) -> None:
    warehouse = Settings.from_env({"WAREHOUSE": "spark"}).warehouse
    assert warehouse.engine == "spark"
    assert warehouse.spark == {"host": "localhost", "port": "10000", "user": "coincap"}
    assert warehouse.raw_bucket_url == (in_tmp / "data" / "lake").as_uri()
    assert warehouse.location == "localhost:10000"
    assert (
        str(warehouse) == f"Spark localhost:10000 (raw files in {(in_tmp / 'data/lake').as_uri()})"
    )


def test_spark_settings_are_read_stripped_and_a_plain_lake_path_becomes_a_file_url(
    in_tmp: Path,
) -> None:
    env = {
        "WAREHOUSE": " Spark ",
        "SPARK_HOST": " thrift.internal ",
        "SPARK_PORT": " 10001 ",
        "SPARK_USER": " etl ",
        "RAW_BUCKET_URL": " lake/raw-files/ ",
    }
    warehouse = Settings.from_env(env).warehouse
    assert warehouse.spark == {"host": "thrift.internal", "port": "10001", "user": "etl"}
    assert warehouse.raw_bucket_url == (in_tmp / "lake" / "raw-files").as_uri()
    assert warehouse.spark_raw_location == warehouse.raw_bucket_url


def test_an_object_store_url_is_kept_and_s3_is_s3a_for_spark() -> None:
    env = {"WAREHOUSE": "spark", "RAW_BUCKET_URL": "s3://coincap-lake/prod/"}
    warehouse = Settings.from_env(env).warehouse
    assert warehouse.raw_bucket_url == "s3://coincap-lake/prod"
    assert warehouse.spark_raw_location == "s3a://coincap-lake/prod"
    gcs = Settings.from_env({**env, "RAW_BUCKET_URL": "gs://lake/x"}).warehouse
    assert gcs.spark_raw_location == "gs://lake/x"


@pytest.mark.parametrize("port", ["ten", "10000x", "-1", "１０"])
def test_a_spark_port_that_is_not_a_number_is_refused_in_one_line(port: str) -> None:
    assert refusal({"WAREHOUSE": "spark", "SPARK_PORT": port}) == (
        f"SPARK_PORT is {port!r}; set it to a number"
    )


def test_spark_settings_are_not_checked_on_another_warehouse() -> None:
    assert Settings.from_env({"SPARK_PORT": "ten"}).warehouse.engine == "duckdb"


def test_spark_warehouse_gives_dbt_the_thrift_server_and_the_lake(in_tmp: Path) -> None:
    env = {"WAREHOUSE": "SPARK", "SPARK_HOST": "127.0.0.1", "SPARK_PORT": "4321"}
    env["RAW_BUCKET_URL"] = "s3://b/lake"
    assert Settings.from_env(env).warehouse.dbt_env() == {
        "WAREHOUSE": "spark",
        "DUCKDB_PATH": str(in_tmp / "data" / "warehouse.duckdb"),
        "SPARK_HOST": "127.0.0.1",
        "SPARK_PORT": "4321",
        "SPARK_USER": "coincap",
        "SPARK_RAW_LOCATION": "s3a://b/lake",
    }


@pytest.mark.parametrize(
    ("engine", "file_format", "keyed"),
    [("duckdb", None, "merge"), ("postgres", None, "merge"), ("spark", "parquet", "append")],
)
def test_dlt_writes_parquet_and_appends_only_on_spark(
    engine: str, file_format: str | None, keyed: str
) -> None:
    warehouse = Settings.from_env({**POSTGRES, "WAREHOUSE": engine}).warehouse
    assert warehouse.loader_file_format == file_format
    assert warehouse.raw_write_disposition == keyed


# --------------------------------------------------------------------------- backups
def test_backups_are_unscheduled_by_default_with_a_36_hour_limit() -> None:
    settings = Settings.from_env({})
    assert settings.backup_schedule == ""
    assert settings.backup_max_age_hours == DEFAULT_BACKUP_MAX_AGE_HOURS == 36
    assert DEFAULT_BACKUP_SCHEDULE == "32 3 * * *"  # docker/entrypoint.sh's default


def test_backup_schedule_and_max_age_are_read_stripped() -> None:
    settings = Settings.from_env({"BACKUP_SCHEDULE": " 0 2 * * * ", "BACKUP_MAX_AGE_HOURS": " 50 "})
    assert settings.backup_schedule == "0 2 * * *"
    assert settings.backup_max_age_hours == 50
    assert backup_schedule_from({"BACKUP_SCHEDULE": "  "}) == ""


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("0", "BACKUP_MAX_AGE_HOURS is '0'; set it to a whole number of hours, 1 or more"),
        ("1.5", "BACKUP_MAX_AGE_HOURS is '1.5'; set it to a whole number of hours, 1 or more"),
        ("-3", "BACKUP_MAX_AGE_HOURS is '-3'; set it to a whole number of hours, 1 or more"),
        ("a day", "BACKUP_MAX_AGE_HOURS is 'a day'; set it to a whole number of hours, 1 or more"),
    ],
)
def test_a_wrong_backup_max_age_is_refused_naming_the_variable(value: str, message: str) -> None:
    assert refusal({"BACKUP_MAX_AGE_HOURS": value}) == message
    with pytest.raises(ConfigError):
        backup_max_age_hours_from({"BACKUP_MAX_AGE_HOURS": value})
