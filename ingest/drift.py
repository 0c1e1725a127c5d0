"""Schema drift: what CoinCap sends, compared after each load with what it sent before.

Per endpoint (`/assets`, `/assets/{id}/history`) the baseline holds every field CoinCap sent, the
JSON kinds of its values (string, number, boolean, object, array) and, per field, how many
snapshots in a row it has been missing. After each load (`Watch.after_load`, called by the
ingest), the answers of the cycle are compared with it:

- added: a field the baseline does not have (or one reported removed that is sent again);
- removed: a field not sent for SCHEMA_DRIFT_SNAPSHOTS snapshots (answers of that endpoint) in a
  row; a field that comes back before that is no change;
- retyped: a field sent with a kind it was not sent with before, or a field for which dlt made a
  variant column in raw (`<column>__v_<type>`: a value its column's type cannot hold).

`null` says nothing about a type: a field sent as null counts as sent, never makes a type change,
and a field that was only ever null takes the first kind it is sent with, silently. Until a
change is acknowledged, a kind already seen for the field is no change (a type that flips back
and forth is raised once, not every cycle).

Each change is one `warning:` line, one alert (`notify_once`, one topic per change) and one row
in `ops.schema_changes`; `coincap-elt status` lists those not acknowledged and
`coincap-elt drift --acknowledge ID|all` acknowledges them (a retyped field's kinds become the
ones last sent; a removed field is forgotten). The baseline is kept in the warehouse
(`ops.schema_baseline`, through the dlt pipeline `coincap_drift_<warehouse>`), so it survives a
restart and a backup/restore; the first load of a warehouse sets it silently. Drift never
changes the cycle's outcome: raw keeps what was sent (dlt adds the columns) and the marts are
built as before. What goes wrong here is a `warning:` line.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import sys
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ingest.alerts import STATE_FILE, notify_once, redact
from ingest.logs import first_line

if TYPE_CHECKING:
    from ingest.config import Settings
    from ingest.warehouse import Query

logger = logging.getLogger("ingest.drift")

DATASET = "ops"
CHANGES = "schema_changes"
BASELINE = "schema_baseline"
ASSETS, HISTORY = "/assets", "/assets/{id}/history"
RAW_TABLES = {ASSETS: "assets", HISTORY: "asset_history"}  # endpoint -> its table in raw
VARIANT = "__v_"
CHANGE_COLUMNS: dict[str, dict[str, Any]] = {
    "change_id": {"data_type": "text", "nullable": False},
    "detected_at": {"data_type": "timestamp", "nullable": False},
    "endpoint": {"data_type": "text", "nullable": False},
    "field": {"data_type": "text", "nullable": False},
    "change": {"data_type": "text", "nullable": False},
    "old_kind": {"data_type": "text", "nullable": True},
    "new_kind": {"data_type": "text", "nullable": True},
    "first_seen_at": {"data_type": "timestamp", "nullable": True},
    "missing_since": {"data_type": "timestamp", "nullable": True},
    "detail": {"data_type": "text", "nullable": False},
    "acknowledged_at": {"data_type": "timestamp", "nullable": True},
}
BASELINE_COLUMNS: dict[str, dict[str, Any]] = {
    "endpoint": {"data_type": "text", "nullable": False},
    "baseline": {"data_type": "text", "nullable": False},  # JSON: fields and variant columns
    "updated_at": {"data_type": "timestamp", "nullable": False},
}
LISTED = (
    "change_id, detected_at, endpoint, field, change, old_kind, new_kind, detail, acknowledged_at"
)


# --------------------------------------------------------------------------- the comparison
def kind_of(value: Any) -> str | None:
    """The JSON kind of a value as sent; None for null (not informative)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def observe(items: Any, seen: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """The fields of a list of JSON objects and the kinds of their values (nulls add a field,
    not a kind), merged into `seen`."""
    seen = {} if seen is None else seen
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            for name, value in item.items():
                kinds = seen.setdefault(str(name), set())
                kind = kind_of(value)
                if kind:
                    kinds.add(kind)
    return seen


def kinds_text(kinds: Any) -> str:
    return "|".join(sorted(kinds)) or "null"


@dataclass
class Change:
    endpoint: str
    field: str
    change: str  # added | removed | retyped
    old_kind: str | None = None
    new_kind: str | None = None
    first_seen_at: str | None = None
    missing_since: str | None = None
    note: str = ""  # what else there is to say (a variant column, a field sent again)
    change_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    def text(self, snapshots: int) -> str:
        """One line: what changed and what it means."""
        where = f"the field `{self.field}` of CoinCap's {self.endpoint}"
        if self.change == "added":
            what = f"{where} is new ({self.new_kind}); raw keeps it in a new column"
        elif self.change == "removed":
            what = (
                f"{where} was not sent in {snapshots} snapshot(s) in a row (since "
                f"{self.missing_since}); its raw column stays, empty in the new rows"
            )
        else:
            what = (
                f"{where} changed type from {self.old_kind} to {self.new_kind}; raw keeps the "
                "values as sent"
            )
        note = f" ({self.note})" if self.note else ""
        return (
            f"schema drift: {what}{note}; the marts are built as before. See `coincap-elt "
            f"drift`; acknowledge with `coincap-elt drift --acknowledge {self.change_id}`"
        )


def compare(
    baseline: Mapping[str, Any] | None,
    endpoint: str,
    seen: Mapping[str, set[str]],
    snapshots: int,
    now: str,
) -> tuple[dict[str, Any], list[Change]]:
    """The endpoint's new baseline and the changes, for the fields and kinds `seen` in one load.
    Without a baseline (the first load) the seen fields are the baseline: no change."""
    if baseline is None:
        fields = {name: _entry(kinds, now) for name, kinds in seen.items()}
        return {"fields": fields, "variants": []}, []
    new = copy.deepcopy(dict(baseline))
    fields: dict[str, dict[str, Any]] = new.setdefault("fields", {})
    changes = []
    for name, kinds in seen.items():
        entry = fields.get(name)
        if entry is None or entry.get("removed"):
            note = "sent again after it was reported removed" if entry else ""
            fields[name] = _entry(kinds, now)
            changes.append(Change(endpoint, name, "added", None, kinds_text(kinds), now, note=note))
            continue
        entry["missing"], entry["missing_since"] = 0, None
        entry["last"] = sorted(kinds)
        known = set(entry["kinds"])
        if known and not kinds <= known:
            changes.append(
                Change(
                    endpoint,
                    name,
                    "retyped",
                    kinds_text(known),
                    kinds_text(kinds),
                    entry.get("first_seen"),
                )
            )
        entry["kinds"] = sorted(known | kinds)
    for name, entry in fields.items():
        if name in seen or entry.get("removed"):
            continue
        entry["missing"] = entry.get("missing", 0) + 1
        entry["missing_since"] = entry.get("missing_since") or now
        if entry["missing"] >= snapshots:
            entry["removed"] = True
            changes.append(
                Change(
                    endpoint,
                    name,
                    "removed",
                    kinds_text(entry["kinds"]),
                    None,
                    entry.get("first_seen"),
                    entry["missing_since"],
                )
            )
    return new, changes


def compare_variants(
    baseline: dict[str, Any],
    endpoint: str,
    columns: list[str],
    normalize: Any,
    changes: list[Change],
) -> list[Change]:
    """Variant columns dlt made in the endpoint's raw table since the baseline (`columns`: the
    table's columns). One that belongs to a field already raised as retyped in this load is
    noted on that change; any other is a retyped change of its own. Updates `baseline`."""
    known = set(baseline.setdefault("variants", []))
    fields = baseline.get("fields", {})
    new = []
    for column in sorted(c for c in columns if VARIANT in c and c not in known):
        base, _, dlt_type = column.partition(VARIANT)
        name = next((f for f in fields if normalize(f) == base), base)
        raised = next((c for c in changes if c.field == name and c.change == "retyped"), None)
        note = f"dlt stored the other values in the variant column {column}"
        if raised:
            raised.note = note
            continue
        entry = fields.get(name, {})
        new.append(
            Change(
                endpoint,
                name,
                "retyped",
                kinds_text(entry.get("kinds", [])),
                f"{dlt_type} (dlt's type)",
                entry.get("first_seen"),
                note=note,
            )
        )
    baseline["variants"] = sorted(known | {c for c in columns if VARIANT in c})
    return new


def acknowledge_in(baseline: dict[str, Any], change: str, name: str) -> None:
    """What acknowledging a change does to its endpoint's baseline: a retyped field's kinds
    become those last sent, a removed field is forgotten (sent again, it is new)."""
    fields = baseline.get("fields", {})
    entry = fields.get(name)
    if entry is None:
        return
    if change == "removed" and entry.get("removed"):
        del fields[name]
    elif change == "retyped" and entry.get("last"):
        entry["kinds"] = list(entry["last"])


def _entry(kinds: set[str], now: str) -> dict[str, Any]:
    return {
        "kinds": sorted(kinds),
        "last": sorted(kinds),
        "missing": 0,
        "missing_since": None,
        "first_seen": now,
    }


def endpoint_of(path: str) -> str | None:
    path = "/" + path.strip("/")
    if path == ASSETS:
        return ASSETS
    if re.fullmatch(r"/assets/[^/]+/history", path):
        return HISTORY
    return None


# --------------------------------------------------------------------------- the cycle's step
class Watch:
    """Sees every answer the client receives (`client.on_answer`) and, after the load, compares
    them with the baseline. Never raises: drift is a warning, never the cycle's outcome."""

    def __init__(self, client: Any) -> None:
        self.seen: dict[str, dict[str, set[str]]] = {}
        client.on_answer = self.answer

    def answer(self, path: str, content: bytes) -> None:
        endpoint = endpoint_of(path)
        if endpoint is None:
            return
        try:
            data = json.loads(content).get("data")
        except (ValueError, AttributeError):
            return
        observe(data, self.seen.setdefault(endpoint, {}))

    def after_load(self, settings: Settings, raw: Any) -> None:
        """`raw`: the ingest's dlt pipeline, whose schema shows the variant columns."""
        try:
            check(settings, raw, self.seen)
        except Exception as exc:  # noqa: BLE001 - never the cycle's outcome
            logger.warning(
                "schema drift not checked this cycle (%s: %s); the next cycle compares again",
                type(exc).__name__,
                redact(first_line(exc), limit=200),
            )


def _pipeline(settings: Settings) -> Any:
    import dlt

    return dlt.pipeline(
        pipeline_name=f"coincap_drift_{settings.warehouse.engine}",
        pipelines_dir=str(settings.pipelines_dir),
        destination=settings.warehouse.destination(),
        dataset_name=DATASET,
    )


def check(settings: Settings, raw: Any, seen: dict[str, dict[str, set[str]]]) -> list[Change]:
    """Compares what this load saw with the baseline; records, warns and alerts each change."""
    pipeline = _pipeline(settings)
    _load_pending(pipeline)  # an earlier cycle's changes and baseline first
    rows = _read(settings, BASELINE, f"select endpoint, baseline from {DATASET}.{BASELINE}")
    stored = {endpoint: json.loads(text) for endpoint, text in rows or []}
    now = datetime.now(UTC)
    stamp = now.isoformat(timespec="seconds").replace("+00:00", "Z")
    baselines, changes = copy.deepcopy(stored), []
    for endpoint, fields in seen.items():
        baselines[endpoint], found = compare(
            stored.get(endpoint), endpoint, fields, settings.schema_drift_snapshots, stamp
        )
        changes += found
    schema = raw.default_schema
    for endpoint, table in RAW_TABLES.items():
        if endpoint not in baselines or table not in schema.tables:
            continue
        columns = list(schema.get_table_columns(table))
        new = compare_variants(
            baselines[endpoint], endpoint, columns, schema.naming.normalize_identifier, changes
        )
        if endpoint in stored:  # the first load of an endpoint only learns its variants
            changes += new
    if baselines != stored:
        _write(settings, pipeline, changes, baselines, now)
        for change in changes:
            logger.warning("%s", change.text(settings.schema_drift_snapshots))
        if not stored:
            logger.info("schema drift: the baseline of CoinCap's fields is set (first load)")
    _alert(settings, pipeline)
    return changes


def _read(settings: Settings, table: str, sql: str) -> list[tuple[Any, ...]]:
    """The rows of `sql`, which reads ops.`table`; none while that table does not exist. On
    Spark the ops tables are registered again first: dlt wrote them as files since the build."""
    warehouse = settings.warehouse
    with warehouse.cycle_reader("coincap-elt drift") as query:
        _register(settings, query)
        if f"{DATASET}.{table}" not in warehouse.relations(query, (DATASET,)):
            return []
        return query(sql)


def _register(settings: Settings, query: Query | None = None) -> None:
    """Spark: a new ops table over the files dlt wrote, so status and `coincap-elt drift` see
    it before the next build registers every table again."""
    if settings.warehouse.engine == "spark":
        from ingest.lake import register_tables

        register_tables(settings.warehouse, query, datasets=(DATASET,), new_only=True)


def _load_pending(pipeline: Any) -> None:
    if pipeline.has_pending_data:
        pipeline.normalize()
        pipeline.load()


def _alert(settings: Settings, pipeline: Any) -> None:
    """One alert per change not acknowledged (`notify_once`: one topic per change, sent once;
    one that could not be delivered is sent by the next cycle)."""
    if not settings.alert_webhook_url:
        return
    rows = _read(
        settings,
        CHANGES,
        f"select change_id, detail from {DATASET}.{CHANGES} "
        "where acknowledged_at is null order by detected_at",
    )
    for change_id, detail in rows:
        notify_once(settings, f"schema_drift_{change_id}", change_id, detail)


def _write(
    settings: Settings,
    pipeline: Any,
    changes: list[Change],
    baselines: dict[str, Any],
    now: datetime,
) -> None:
    import dlt

    snapshots = settings.schema_drift_snapshots
    rows = [
        {
            "change_id": c.change_id,
            "detected_at": now,
            "endpoint": c.endpoint,
            "field": c.field,
            "change": c.change,
            "old_kind": c.old_kind,
            "new_kind": c.new_kind,
            "first_seen_at": c.first_seen_at,
            "missing_since": c.missing_since,
            "detail": c.text(snapshots),
            "acknowledged_at": None,
        }
        for c in changes
    ]
    baseline_rows = [
        {"endpoint": e, "baseline": json.dumps(b, sort_keys=True), "updated_at": now}
        for e, b in baselines.items()
    ]
    resources = [
        dlt.resource(
            baseline_rows, name=BASELINE, write_disposition="replace", columns=BASELINE_COLUMNS
        )
    ]
    if rows:
        resources.append(
            dlt.resource(rows, name=CHANGES, write_disposition="append", columns=CHANGE_COLUMNS)
        )
    pipeline.extract(resources, loader_file_format=settings.warehouse.loader_file_format)
    pipeline.normalize()
    pipeline.load()
    _register(settings)


# --------------------------------------------------------------------------- reading it back
def unacknowledged(query: Query, existing: set[str]) -> list[dict[str, Any]] | None:
    """The changes not acknowledged, oldest first (`coincap-elt status`); None before any."""
    if f"{DATASET}.{CHANGES}" not in existing:
        return None
    return _listed(
        query(
            f"select {LISTED} from {DATASET}.{CHANGES} where acknowledged_at is null "
            "order by detected_at, endpoint, field"
        )
    )


def _listed(rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        change = dict(zip([c.strip() for c in LISTED.split(",")], row, strict=True))
        for key in ("detected_at", "acknowledged_at"):
            when = change[key]
            if isinstance(when, datetime):
                change[key] = when.astimezone(UTC).isoformat(timespec="seconds")
                change[key] = change[key].replace("+00:00", "Z")
        out.append(change)
    return out


def render_changes(changes: list[dict[str, Any]] | None) -> list[str]:
    """Status lines for the changes not acknowledged (none before the first change)."""
    if changes is None:
        return []
    if not changes:
        return ["Schema changes: none to acknowledge"]
    return [
        f"Schema changes not acknowledged ({len(changes)}; `coincap-elt drift --acknowledge "
        "ID|all` when dealt with):",
        *(_line(c) for c in changes),
    ]


def _line(c: dict[str, Any]) -> str:
    kinds = {
        "added": f"({c['new_kind']})",
        "removed": f"(was {c['old_kind']})",
        "retyped": f"({c['old_kind']} -> {c['new_kind']})",
    }.get(c["change"], "")
    ack = f"  acknowledged {c['acknowledged_at']}" if c.get("acknowledged_at") else ""
    return (
        f"  {c['change_id']}  {c['detected_at']}  {c['endpoint']}  {c['change']} "
        f"`{c['field']}` {kinds}{ack}"
    )


# --------------------------------------------------------------------------- the command
def main(settings: Settings, acknowledge: str | None = None, as_json: bool = False) -> int:
    """`coincap-elt drift [--json]`: every change recorded, newest first;
    `--acknowledge ID|all`: marks them acknowledged. Exit 1 with one `error:` line when the
    warehouse cannot be read or ID names no change not yet acknowledged."""
    from ingest.status import StatusError, _relations, connect
    from ingest.warehouse import WarehouseError

    try:
        if acknowledge:
            done = _acknowledge(settings, acknowledge.strip())
            if done:
                print(f"acknowledged {len(done)} schema change(s): {', '.join(done)}")
            else:
                print("no schema change waits to be acknowledged")
            return 0
        with connect(settings, settings.run_dir) as query:
            existing = _relations(settings.warehouse, query)
            rows = []
            if f"{DATASET}.{CHANGES}" in existing:
                rows = query(
                    f"select {LISTED} from {DATASET}.{CHANGES} "
                    "order by detected_at desc, endpoint, field"
                )
    except (StatusError, WarehouseError, DriftError) as exc:
        print(f"error: {redact(str(exc))}", file=sys.stderr)
        return 1
    changes = _listed(rows)
    if as_json:
        print(json.dumps(changes, indent=2))
    elif not changes:
        print("No schema changes recorded (ops.schema_changes).")
    else:
        print(f"Schema changes, newest first ({DATASET}.{CHANGES}):")
        print("\n".join(_line(c) for c in changes))
    return 0


class DriftError(Exception):
    """One line that says what to do."""


def _acknowledge(settings: Settings, which: str) -> list[str]:
    """Marks the change `which` (an id, or `all`) acknowledged and updates the baseline, under
    the cycle lock (a cycle writes the baseline too)."""
    from ingest.cycle import cycle_lock

    with cycle_lock(settings.run_dir, wait=True):
        pipeline = _pipeline(settings)
        _load_pending(pipeline)
        try:
            if settings.warehouse.engine == "spark":
                return _acknowledge_by_rewrite(settings, pipeline, which)
            with pipeline.sql_client() as client:
                return _acknowledge_in(settings, client, which)
        except DriftError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line, not a traceback
            raise DriftError(
                f"the schema changes could not be acknowledged in {settings.warehouse} "
                f"({type(exc).__name__}: {first_line(exc)}); check that it is reachable"
            ) from exc


def _acknowledge_in(settings: Settings, client: Any, which: str) -> list[str]:
    from dlt.destinations.exceptions import DatabaseUndefinedRelation

    try:
        rows = client.execute_sql(
            f"select change_id, endpoint, field, change from {DATASET}.{CHANGES} "
            "where acknowledged_at is null order by detected_at"
        )
    except DatabaseUndefinedRelation:
        rows = []
    rows = _chosen(rows or [], which)
    if not rows:
        return []
    stored = {
        e: json.loads(b)
        for e, b in client.execute_sql(f"select endpoint, baseline from {DATASET}.{BASELINE}")
    }
    for _, endpoint, name, change in rows:
        if endpoint in stored:
            acknowledge_in(stored[endpoint], change, name)
    now = datetime.now(UTC)
    with client.begin_transaction():
        for endpoint, baseline in stored.items():
            client.execute_sql(
                f"update {DATASET}.{BASELINE} set baseline = %s, updated_at = %s "
                "where endpoint = %s",
                json.dumps(baseline, sort_keys=True),
                now,
                endpoint,
            )
        for change_id, *_ in rows:
            client.execute_sql(
                f"update {DATASET}.{CHANGES} set acknowledged_at = %s where change_id = %s",
                now,
                change_id,
            )
    return _forget_alerts(settings, rows)


def _chosen(rows: list[Any], which: str) -> list[Any]:
    """The rows (change_id first) not acknowledged that `which` (an id or `all`) names."""
    if which == "all":
        return list(rows)
    chosen = [r for r in rows if r[0] == which]
    if not chosen:
        raise DriftError(
            f"no schema change {which!r} waits to be acknowledged; `coincap-elt drift` "
            "lists them (or use --acknowledge all)"
        )
    return chosen


def _forget_alerts(settings: Settings, rows: list[Any]) -> list[str]:
    for change_id, *_ in rows:  # its alert was sent: nothing more to remember
        (settings.run_dir / f"{STATE_FILE}_schema_drift_{change_id}").unlink(missing_ok=True)
    return [r[0] for r in rows]


def _acknowledge_by_rewrite(settings: Settings, pipeline: Any, which: str) -> list[str]:
    """Spark: Parquet files take no UPDATE, so both ops tables are written again whole, through
    dlt (replace): the changes with their acknowledged_at set, the baselines updated. A run
    stopped in between leaves dlt's package pending; the next cycle or acknowledge loads it."""
    import dlt

    names = list(CHANGE_COLUMNS)
    changes = [
        dict(zip(names, row, strict=True))
        for row in _read(settings, CHANGES, f"select {', '.join(names)} from {DATASET}.{CHANGES}")
    ]
    waiting = sorted(
        (c for c in changes if c["acknowledged_at"] is None), key=lambda c: c["detected_at"]
    )
    rows = _chosen(
        [(c["change_id"], c["endpoint"], c["field"], c["change"]) for c in waiting], which
    )
    if not rows:
        return []
    baselines = _read(settings, BASELINE, f"select endpoint, baseline from {DATASET}.{BASELINE}")
    stored = {endpoint: json.loads(text) for endpoint, text in baselines}
    for _, endpoint, name, change in rows:
        if endpoint in stored:
            acknowledge_in(stored[endpoint], change, name)
    now = datetime.now(UTC)
    acknowledged = {r[0] for r in rows}
    for change in changes:
        if change["change_id"] in acknowledged:
            change["acknowledged_at"] = now
    baseline_rows = [
        {"endpoint": e, "baseline": json.dumps(b, sort_keys=True), "updated_at": now}
        for e, b in stored.items()
    ]
    pipeline.extract(
        [
            dlt.resource(
                baseline_rows, name=BASELINE, write_disposition="replace", columns=BASELINE_COLUMNS
            ),
            dlt.resource(
                changes, name=CHANGES, write_disposition="replace", columns=CHANGE_COLUMNS
            ),
        ],
        loader_file_format=settings.warehouse.loader_file_format,
    )
    pipeline.normalize()
    pipeline.load()
    _register(settings)
    return _forget_alerts(settings, rows)
