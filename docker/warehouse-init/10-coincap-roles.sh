#!/usr/bin/env bash
# Runs once, when the warehouse's data volume is first initialised (the official postgres image runs
# /docker-entrypoint-initdb.d/*.sh as the superuser POSTGRES_USER, connected to POSTGRES_DB).
#
# Creates, in the warehouse database POSTGRES_DB:
#   - PIPELINE_DB_USER: owns the schemas raw, staging and marts (dlt and dbt write as this role);
#   - METABASE_READER_DB_USER: read-only, SELECT on marts only (including tables the pipeline
#     creates later, through default privileges), nothing in raw or staging, read-only transactions,
#     a statement timeout;
# and a separate database METABASE_APP_DB_NAME, owned by METABASE_APP_DB_USER, for Metabase's own
# application data. Nobody else may connect to either database.
# Passwords come from the environment (the untracked env file); psql passes them as variables, so
# they never appear in a command line or in this file.
set -euo pipefail

: "${POSTGRES_USER:?}" "${POSTGRES_DB:?}"
: "${PIPELINE_DB_PASSWORD:?PIPELINE_DB_PASSWORD is required}"
: "${METABASE_READER_DB_PASSWORD:?METABASE_READER_DB_PASSWORD is required}"
: "${METABASE_APP_DB_PASSWORD:?METABASE_APP_DB_PASSWORD is required}"

psql --no-psqlrc --quiet -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v warehouse_db="$POSTGRES_DB" \
  -v pipeline_user="${PIPELINE_DB_USER:-pipeline}" \
  -v pipeline_password="$PIPELINE_DB_PASSWORD" \
  -v reader_user="${METABASE_READER_DB_USER:-metabase_reader}" \
  -v reader_password="$METABASE_READER_DB_PASSWORD" \
  -v reader_statement_timeout="${METABASE_READER_STATEMENT_TIMEOUT:-60s}" \
  -v app_db="${METABASE_APP_DB_NAME:-metabase}" \
  -v app_user="${METABASE_APP_DB_USER:-metabase_app}" \
  -v app_password="$METABASE_APP_DB_PASSWORD" <<'SQL'
-- nobody connects to the warehouse or creates temporary tables in it unless granted below
revoke all on database :"warehouse_db" from public;
-- the maintenance database is no place for anyone but the superuser either
revoke connect, temporary on database postgres from public;

-- the pipeline: dlt loads raw (and creates its raw_staging schema for merges), dbt builds
-- staging and marts (and uses temporary tables for incremental models)
create role :"pipeline_user" with login password :'pipeline_password'
    nosuperuser nocreatedb nocreaterole noreplication;
grant connect, create, temporary on database :"warehouse_db" to :"pipeline_user";
create schema raw authorization :"pipeline_user";
create schema staging authorization :"pipeline_user";
create schema marts authorization :"pipeline_user";
comment on schema raw is 'CoinCap figures exactly as delivered (dlt); not for analysts';
comment on schema staging is 'typed, renamed views over raw (dbt); not for analysts';
comment on schema marts is 'what analysts and Metabase read (dbt)';

-- Metabase's window on the warehouse: marts, read-only, with a statement timeout
create role :"reader_user" with login password :'reader_password'
    nosuperuser nocreatedb nocreaterole noreplication noinherit connection limit 20;
alter role :"reader_user" set statement_timeout = :'reader_statement_timeout';
alter role :"reader_user" set idle_in_transaction_session_timeout = '5min';
alter role :"reader_user" set default_transaction_read_only = on;
grant connect on database :"warehouse_db" to :"reader_user";
grant usage on schema marts to :"reader_user";
grant select on all tables in schema marts to :"reader_user";
-- tables and views the pipeline creates in marts later (every dbt build) are readable too
alter default privileges for role :"pipeline_user" in schema marts
    grant select on tables to :"reader_user";

-- Metabase's own application data: a database of its own, owned by a role of its own
create role :"app_user" with login password :'app_password'
    nosuperuser nocreatedb nocreaterole noreplication;
create database :"app_db" owner :"app_user";
revoke all on database :"app_db" from public;
grant all on database :"app_db" to :"app_user";
SQL

echo "coincap: roles, schemas and the Metabase database are in place"
