"""`coincap-elt backfill --days N`: extend the 5-minute history further back than what is stored.

COINCAP_BACKFILL_DAYS applies to an asset's first cycle only; this command asks CoinCap for the
history between N days ago and the oldest point stored for each asset (or the oldest window
already asked for, so a second run asks nothing twice), through the same dlt pipeline, tables and
merge as the cycle: raw.asset_history keyed by (asset_id, time) (appended on Spark, where
staging keeps one row per key), every window recorded in raw.asset_history_requests. Then
`dbt build` brings the points into the marts.

- Cost first: the estimated credits are printed before any request; on a terminal it asks to go
  on, otherwise `--yes` is required.
- Newest windows first, loaded in batches, each batch under the cycle lock (a running cycle is
  waited for; cycles that start during a batch skip, as they do behind a long cycle). Killed, it
  resumes where it stopped: the next run starts from the oldest point now stored.
- A CoinCap failure (after the client's retries) or an exhausted quota stops it with one
  `error:` line; what was loaded stays.
- Its credits are recorded in the run log (one row, like a cycle's), so the month's total counts
  them; it sends no alert.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from ingest.coincap import (
    DAY_MS,
    HistoryWindow,
    estimate_history_credits,
    fetch_history,
    split_windows,
)
from ingest.config import Settings

logger = logging.getLogger("coincap_elt")

BATCH_WINDOWS = 10  # windows per load: what a killed backfill can lose and must ask again


def plan(
    oldest: dict[str, int], asset_ids: Sequence[str], days: int, now_ms: int
) -> list[HistoryWindow]:
    """The windows between `days` ago and each asset's oldest stored or asked-for time (now for
    an asset with nothing stored), newest first so the stored series grows back without a hole."""
    since = now_ms - days * DAY_MS
    windows: list[HistoryWindow] = []
    for asset_id in asset_ids:
        until = oldest.get(asset_id, now_ms + 1) - 1
        spans = [HistoryWindow(asset_id, s, e) for s, e in split_windows(since, until)]
        windows += reversed(spans)
    # interleave by age so every asset moves back together: a stopped backfill stays even
    return sorted(windows, key=lambda w: -w.end)


def estimate_credits(windows: Sequence[HistoryWindow]) -> int:
    return estimate_history_credits([(w.start, w.end) for w in windows])


def main(settings: Settings, days: int, assets: str | None, yes: bool) -> int:
    from ingest.config import ConfigError
    from ingest.cycle import cycle_lock

    run_dir = settings.run_dir
    try:
        settings.require_api_key()
    except ConfigError as exc:
        logger.error("error: %s", exc)
        return 1
    asset_ids = settings.asset_ids
    if assets:
        asked = tuple(dict.fromkeys(a.strip().lower() for a in assets.split(",") if a.strip()))
        unknown = [a for a in asked if a not in asset_ids]
        if unknown or not asked:
            logger.error(
                "error: --assets names %s, not in COINCAP_ASSET_IDS (%s); backfill only "
                "configured assets",
                ", ".join(unknown) or "nothing",
                ", ".join(asset_ids),
            )
            return 2
        asset_ids = asked

    from ingest.coincap_pipeline import open_pipeline

    pipeline = open_pipeline(settings)
    from ingest.warehouse import WarehouseError

    try:
        with cycle_lock(run_dir, wait=True):  # Spark: raw's tables are registered again first
            oldest = _oldest_stored(settings, asset_ids)
    except WarehouseError as exc:
        logger.error("error: %s", exc)
        return 1
    windows = plan(oldest, asset_ids, days, int(time.time() * 1000))
    if not windows:
        logger.info(
            "backfill: nothing to ask; the stored history of %s already reaches %d day(s) back",
            ", ".join(asset_ids),
            days,
        )
        return 0
    cost = estimate_credits(windows)
    logger.info(
        "backfill of %d day(s) for %d asset(s): %d request(s), about %s credit(s)",
        days,
        len({w.asset_id for w in windows}),
        len(windows),
        f"{cost:,}",
    )
    if not yes and not _confirmed(cost):
        return 2

    started_at = datetime.now(UTC)
    progress = _Progress(len(windows))
    from ingest.summary import IngestSummary

    summary = IngestSummary()
    try:
        for batch in _batches(windows, BATCH_WINDOWS):
            with cycle_lock(run_dir, wait=True):
                _load(pipeline, settings, run_dir, batch, summary, progress)
    except _Stop as exc:
        summary.error = str(exc)
    finally:
        progress.done()
    error = summary.error
    if not error:
        with cycle_lock(run_dir, wait=True):
            from ingest.transform import run_dbt_steps

            dbt = run_dbt_steps(settings)
        if not dbt.built:
            error = f"the history is in raw, but {dbt.build_error}; the next cycle builds it"
    _record(settings, started_at, summary)
    if error:
        logger.error("error: backfill stopped: %s", error)
        return 1
    logger.info(
        "backfill done: %d window(s), %d point(s), %d CoinCap request(s), %d credit(s); "
        "the marts hold them",
        len(windows),
        summary.rows_loaded,
        summary.coincap_requests,
        summary.coincap_credits,
    )
    return 0


class _Stop(Exception):
    """CoinCap stopped answering usefully: the backfill ends, what was loaded stays."""


def _oldest_stored(settings: Settings, asset_ids: Sequence[str]) -> dict[str, int]:
    """Per asset, the oldest time (ms) raw holds a point for or history was asked back to."""
    warehouse = settings.warehouse
    if not warehouse.exists():  # a DuckDB file no cycle created yet: nothing stored
        return {}
    if warehouse.engine == "spark":
        from ingest.lake import register_tables

        register_tables(warehouse, datasets=("raw",))  # Spark sees every file dlt wrote
    ids = ", ".join("('" + a.replace("'", "''") + "')" for a in asset_ids)
    with warehouse.cycle_reader("coincap-elt backfill") as query:
        existing = warehouse.relations(query, ("raw",))
        oldest = []
        if "raw.asset_history" in existing:
            oldest.append(
                "(select min(h.time) from raw.asset_history as h where h.asset_id = ids.asset_id)"
            )
        if "raw.asset_history_requests" in existing:
            oldest.append(
                "(select min(r.window_start) from raw.asset_history_requests as r "
                "where r.asset_id = ids.asset_id and r.outcome in ('fetched', 'not_found'))"
            )
        if not oldest:  # no raw tables yet: nothing stored
            return {}
        first = oldest[0] if len(oldest) == 1 else f"least({', '.join(oldest)})"
        rows = query(f"select ids.asset_id, {first} from (values {ids}) as ids(asset_id)")
    return {asset_id: int(value) for asset_id, value in rows if value is not None}


def _confirmed(cost: int) -> bool:
    if not sys.stdin.isatty():
        logger.error(
            "error: not on a terminal; run again with --yes to spend about %s credit(s)",
            f"{cost:,}",
        )
        return False
    answer = input(f"Spend about {cost:,} CoinCap credits? [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _batches(windows: Sequence[HistoryWindow], size: int) -> Iterator[Sequence[HistoryWindow]]:
    for i in range(0, len(windows), size):
        yield windows[i : i + size]


def _load(
    pipeline: Any,
    settings: Settings,
    run_dir: Any,
    batch: Sequence[HistoryWindow],
    summary: Any,
    progress: _Progress,
) -> None:
    """One batch: its history requests and one dlt load (merge; append on Spark), like a
    cycle's."""
    import dlt

    from ingest.coincap import REQUEST_HINTS, TIMESTAMP_FIELD, history_hints
    from ingest.coincap.helpers import CoinCapClient, CoinCapError
    from ingest.coincap_pipeline import load_pending
    from ingest.quota import Quota

    quota = Quota.load(run_dir)
    try:
        client = CoinCapClient(
            settings.api_key,
            settings.base_url,
            settings.request_timeout_s,
            max_attempts=quota.attempts(),
        )
    except CoinCapError as exc:
        raise _Stop(str(exc)) from exc
    stop: str | None = None
    hints = history_hints(settings.warehouse.raw_write_disposition)

    @dlt.resource(name="asset_history_backfill")
    def history() -> Iterator[Any]:
        nonlocal stop
        records = []
        try:
            for result in fetch_history(client, batch, max_requests=len(batch)):
                window = result.window
                if result.outcome == "failed":
                    stop = result.detail
                    break
                if result.outcome == "not_found" and result.asked:
                    logger.info(
                        "warning: CoinCap has no history for %s from %s (%s); a known hole",
                        window.asset_id,
                        _iso(window.start),
                        result.detail,
                    )
                elif result.outcome == "fetched":
                    yield dlt.mark.with_hints(result.points, hints, create_table_variant=True)
                records.append(result.record())
                summary.rows_loaded += len(result.points)
                progress.step(window, client.meter.credits + summary.coincap_credits)
        except CoinCapError as exc:  # a refused key, an exhausted quota: the backfill stops
            stop = str(exc)
        if records:
            stamp = int(time.time() * 1000)
            yield dlt.mark.with_hints(
                [{**r, TIMESTAMP_FIELD: stamp} for r in records],
                REQUEST_HINTS,
                create_table_variant=True,
            )

    file_format = settings.warehouse.loader_file_format
    load_pending(pipeline, summary)  # a cycle's or a killed batch's, as a cycle does
    try:
        info = pipeline.run(history(), loader_file_format=file_format)  # type: ignore[arg-type]
        summary.load_ids.extend(info.loads_ids)
    finally:
        quota.after(client.last_unavailable)
        quota.save(run_dir)
        summary.coincap_requests += client.meter.requests
        summary.coincap_credits += client.meter.credits
    if stop:
        raise _Stop(stop)


class _Progress:
    """Windows done and credits so far: one rewritten line on a terminal, a log line per batch
    in cron (every BATCH_WINDOWS windows)."""

    def __init__(self, total: int) -> None:
        self.total, self.done_count = total, 0
        self.tty = sys.stderr.isatty()

    def step(self, window: HistoryWindow, spent: int) -> None:
        self.done_count += 1
        text = (
            f"backfill: {self.done_count}/{self.total} window(s), {window.asset_id} back to "
            f"{_iso(window.start)}, {spent:,} credit(s) so far"
        )
        if self.tty:
            sys.stderr.write("\r" + text.ljust(100)[:100])
            sys.stderr.flush()
        elif self.done_count % BATCH_WINDOWS == 0 or self.done_count == self.total:
            logger.info("%s", text)

    def done(self) -> None:
        if self.tty and self.done_count:
            sys.stderr.write("\n")


def _record(settings: Settings, started_at: datetime, summary: Any) -> None:
    """The backfill's credits in the run log (no alert: it is not a cycle's state)."""
    from ingest.runlog import record_run

    failed_step = "ingest" if summary.error else None
    try:
        record_run(settings, started_at, summary, None, failed_step, alert=False)
    except Exception as exc:  # noqa: BLE001 - a report, not the backfill's outcome
        logger.info("warning: the run log row was not written (%s)", exc)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%MZ")
