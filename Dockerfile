# The runpipeline image: the CoinCap ELT code, its pinned dependencies and cron.
# Cron runs as root (it must, to switch users); every cycle runs as the unprivileged user `coincap`.
# No secret is baked in: configuration arrives as environment variables at run time.
FROM python:3.11.9-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    RUNTIME__DLTHUB_TELEMETRY=false \
    DBT_SEND_ANONYMOUS_USAGE_STATS=false \
    TZ=UTC \
    COINCAP_HOME=/app \
    PYTHON=/usr/local/bin/python \
    WAREHOUSE=postgres \
    DLT_DATA_DIR=/var/lib/coincap/dlt \
    DBT_TARGET_PATH=/var/lib/coincap/dbt-target \
    DBT_LOG_PATH=/var/lib/coincap/dbt-target/logs \
    DBT_DOCS_DIR=/var/lib/coincap/docs \
    COINCAP_RUN_DIR=/var/lib/coincap/run \
    BACKUP_DIR=/var/lib/coincap/backups

# cron: the scheduler; tini: PID 1 that forwards signals and reaps orphans; postgresql-client:
# pg_dump/pg_restore for `coincap-elt backup|restore`, bookworm's is PostgreSQL 15, the warehouse
# service's major version (pg_dump refuses a newer server); util-linux (flock, setpriv) is part of
# the base image
RUN apt-get update \
    && apt-get install -y --no-install-recommends cron tini postgresql-client \
    && pg_dump --version | grep -q ' 15\.' \
    && rm -rf /var/lib/apt/lists/* \
    # only our job: drop the distribution's periodic jobs, let cron's PAM session work unprivileged
    && rm -f /etc/cron.d/* /etc/cron.hourly/* /etc/cron.daily/* /etc/cron.weekly/* /etc/cron.monthly/* \
    && printf '# this image runs only /etc/cron.d/coincap\n' >/etc/crontab \
    && sed -i -E 's/^(session\s+)required(\s+pam_loginuid\.so)/\1optional\2/' /etc/pam.d/cron \
    && groupadd --system --gid 10001 coincap \
    && useradd --system --uid 10001 --gid coincap --create-home --home-dir /home/coincap \
       --shell /usr/sbin/nologin coincap

WORKDIR /app

# dependencies first (cached until pyproject.toml or constraints.txt change): the exact versions the
# tests run with (constraints.txt), then the project itself
COPY pyproject.toml constraints.txt README.md ./
COPY ingest/ ingest/
RUN pip install --no-cache-dir -c constraints.txt . \
    && python -c "import dlt, dbt.version, ingest"

COPY dbt_project/ dbt_project/
COPY profiles/ profiles/
COPY scripts/ scripts/
COPY docker/ docker/
COPY --chmod=0644 crontab /etc/cron.d/coincap

# State that must survive restarts lives in volumes (docker-compose.yml mounts them here); an empty
# named volume starts with these owners and the docs placeholder.
RUN install -d -o coincap -g coincap -m 0750 \
        /var/lib/coincap/dlt /var/lib/coincap/dbt-target /var/lib/coincap/run \
        /var/lib/coincap/backups \
    && install -d -o coincap -g coincap -m 0755 /var/lib/coincap/docs \
    && install -o coincap -g coincap -m 0644 docker/docs-placeholder.html /var/lib/coincap/docs/index.html \
    && chmod 0755 docker/*.sh scripts/*.sh

# unhealthy when no cycle has succeeded for 15 minutes (the heartbeat run_pipeline.sh writes);
# the start period covers the first cycle, which may include a backfill
HEALTHCHECK --interval=1m --timeout=10s --start-period=10m --retries=2 CMD ["/app/docker/healthcheck.sh"]

ENTRYPOINT ["/usr/bin/tini", "--", "/app/docker/entrypoint.sh"]
