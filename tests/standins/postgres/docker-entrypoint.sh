#!/usr/bin/env bash
# STAND-IN FOR TESTS ONLY: a small equivalent of the official postgres image's docker-entrypoint.sh,
# for the stack test's postgres stand-in (tests/standins/README.md). What it reproduces:
#   - as root: creates PGDATA, owned by postgres, and re-runs itself as postgres;
#   - on an empty PGDATA: initdb with POSTGRES_USER (default postgres) and POSTGRES_PASSWORD,
#     plus POSTGRES_INITDB_ARGS; `host all all all scram-sha-256` in pg_hba.conf
#     (POSTGRES_HOST_AUTH_METHOD); a server on the Unix socket only; POSTGRES_DB created; every
#     /docker-entrypoint-initdb.d/*.sh (run if executable, else sourced) and *.sql run as
#     POSTGRES_USER in POSTGRES_DB; the server stopped;
#   - then runs the command (postgres) in the foreground.
# An initialised PGDATA is started as it is: the init scripts never run twice.
set -euo pipefail

if [[ "${1:-}" == -* ]]; then
  set -- postgres "$@"
fi

if [[ "$1" == postgres && "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

if [[ "$1" == postgres && ! -s "$PGDATA/PG_VERSION" ]]; then
  : "${POSTGRES_PASSWORD:?Database is uninitialized and superuser password is not specified: set POSTGRES_PASSWORD}"
  export POSTGRES_USER="${POSTGRES_USER:-postgres}"
  export POSTGRES_DB="${POSTGRES_DB:-$POSTGRES_USER}"
  # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a list of arguments, as in the original
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$POSTGRES_PASSWORD") \
    ${POSTGRES_INITDB_ARGS:-}
  printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  export PGPASSWORD="$POSTGRES_PASSWORD"
  psql_init=(psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc)
  if [[ "$POSTGRES_DB" != postgres ]]; then
    "${psql_init[@]}" --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        if [[ -x "$f" ]]; then
          echo "$0: running $f"
          "$f"
        else
          echo "$0: sourcing $f"
          # shellcheck disable=SC1090
          . "$f"
        fi
        ;;
      *.sql)
        echo "$0: running $f"
        "${psql_init[@]}" --dbname "$POSTGRES_DB" -f "$f"
        ;;
      *)
        if [[ -e "$f" ]]; then echo "$0: ignoring $f"; fi
        ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
