"""Schema drift end to end on DuckDB and PostgreSQL: CoinCap changes what it sends, every cycle
still exits 0, each change is raised exactly once (one `warning:` line, one alert to the webhook,
one row in ops.schema_changes), `coincap-elt status` lists it until `coincap-elt drift
--acknowledge all`, raw keeps what was sent and the marts' rows are those CoinCap's figures give.

Five cycles of two assets, SCHEMA_DRIFT_SNAPSHOTS=2, CoinCap's clock 5 minutes on each time:

1. the baseline (the first load: silent);
2. `tags` added (an object), `tokens` no longer sent (1 of 2), `rank` a number instead of text;
3. `tags` a string now (dlt puts it in the variant column tags__v_text), `tokens` still missing
   (2 of 2: removed);
4. the same answers: nothing new is raised;
5. after `coincap-elt drift --acknowledge all`, the same answers again: nothing is raised.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from helpers import API_KEY, CycleResult, Installation, Warehouse

from devkit.fake_coincap import DEFAULT_ASSETS, FakeCoinCap, now_ms
from devkit.webhook import WebhookReceiver

ASSET_IDS = ["bitcoin", "ethereum"]
BASE = [a for a in DEFAULT_ASSETS if a["id"] in ASSET_IDS]
FIVE_MINUTES = 300_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PRICE_COLUMNS = (
    "asset_id, symbol, name, explorer, rank, price_usd, market_cap_usd, volume_usd_24h, supply, "
    "max_supply, change_percent_24h, vwap_24h"
)


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def drifted(tags: object) -> list[dict]:
    """The assets with `tags` added, `tokens` left out and `rank` a JSON number."""
    return [
        {**{k: v for k, v in a.items() if k != "tokens"}, "rank": int(a["rank"]), "tags": tags}
        for a in BASE
    ]


def drift_lines(result: CycleResult) -> list[str]:
    assert result.returncode == 0, result.describe()
    return result.lines_with("warning:", "schema drift")


def prices_at(wh: Warehouse, ts_ms: int) -> list[tuple]:
    return wh.query(
        f"select {PRICE_COLUMNS} from marts.fct_asset_prices where observed_at = ? "
        "order by asset_id",
        (EPOCH + timedelta(milliseconds=ts_ms),),
    )


def raw_at(wh: Warehouse, ts_ms: int, columns: str) -> dict[str, tuple]:
    rows = wh.query(
        f"select id, {columns} from raw.assets where coincap_timestamp = ? order by id", (ts_ms,)
    )
    return {row[0]: row[1:] for row in rows}


def as_json(value: object) -> object:
    """A json column as the engine returns it (DuckDB: text, PostgreSQL: parsed)."""
    return json.loads(value) if isinstance(value, str) else value


def test_schema_drift_is_raised_once_and_acknowledged(
    warehouse: Warehouse, webhook: WebhookReceiver, tmp_path
):
    t1 = (now_ms() - 30 * 60_000) // FIVE_MINUTES * FIVE_MINUTES + 20_000
    with FakeCoinCap(api_key=API_KEY, assets=BASE, timestamp_ms=t1) as fake:
        inst = Installation(
            warehouse,
            fake,
            tmp_path,
            asset_ids=ASSET_IDS,
            settings={"ALERT_WEBHOOK_URL": webhook.url, "SCHEMA_DRIFT_SNAPSHOTS": "2"},
        )
        wh = warehouse

        # 1. the baseline: no drift, no alert
        assert drift_lines(inst.cycle()) == []
        assert webhook.delivered() == []
        baseline_prices = prices_at(wh, t1)
        assert [(r[0], r[4], r[5]) for r in baseline_prices] == [
            (a["id"], int(a["rank"]), Decimal(a["priceUsd"]))
            for a in sorted(BASE, key=lambda a: a["id"])
        ]

        # 2. tags added, rank a number, tokens missing once (of 2)
        t2 = t1 + FIVE_MINUTES
        fake.set_snapshot(drifted({"chain": "main"}), t2)
        second = drift_lines(inst.cycle())
        assert len(second) == 2, "\n".join(second)
        assert [ln for ln in second if "`tags`" in ln and "is new (object)" in ln], second
        assert [ln for ln in second if "`rank`" in ln and "from string to number" in ln], second
        assert all("/assets" in ln and "--acknowledge" in ln for ln in second)
        assert len(webhook.delivered()) == 2, webhook.delivered()

        # 3. tags a string (a variant column in raw), tokens missing twice: removed
        t3 = t2 + FIVE_MINUTES
        fake.set_snapshot(drifted("none"), t3)
        third = drift_lines(inst.cycle())
        assert len(third) == 2, "\n".join(third)
        assert [ln for ln in third if "`tokens`" in ln and "not sent in 2 snapshot" in ln], third
        assert [
            ln
            for ln in third
            if "`tags`" in ln and "from object to string" in ln and "tags__v_text" in ln
        ], third

        # 4. the same answers: nothing raised again, no alert again
        t4 = t3 + FIVE_MINUTES
        fake.set_snapshot(None, t4)
        assert drift_lines(inst.cycle()) == []

        alerts = webhook.delivered()
        assert len(alerts) == 4, alerts
        for name in ("tags", "rank", "tokens"):
            assert [a for a in alerts if f"`{name}`" in a and "/assets" in a], (name, alerts)
        assert all("schema drift" in a for a in alerts)

        changes = wh.query(
            "select endpoint, field, change, old_kind, new_kind, acknowledged_at "
            "from ops.schema_changes order by field, change"
        )
        assert changes == [
            ("/assets", "rank", "retyped", "string", "number", None),
            ("/assets", "tags", "added", None, "object", None),
            ("/assets", "tags", "retyped", "object", "string", None),
            ("/assets", "tokens", "removed", "object", None, None),
        ]

        # raw keeps what was sent: the new column, the variant column, a number as its text
        columns = wh.columns("raw", "assets")
        assert {"tags", "tags__v_text", "tokens"} <= set(columns), columns
        sent = raw_at(wh, t2, "tags, rank, tokens")
        assert {k: (as_json(v[0]), v[1], v[2]) for k, v in sent.items()} == {
            "bitcoin": ({"chain": "main"}, "1", None),
            "ethereum": ({"chain": "main"}, "2", None),
        }
        assert raw_at(wh, t3, "tags, tags__v_text") == {
            "bitcoin": (None, "none"),
            "ethereum": (None, "none"),
        }

        # the marts: each cycle's rows are the baseline's figures (only the time moves on)
        for ts in (t2, t3, t4):
            assert prices_at(wh, ts) == baseline_prices, ts
        assert wh.count("marts.fct_rejected_asset_prices") == 0

        # status lists the four changes; drift lists them; acknowledging clears status
        status = inst.command("status")
        assert status.returncode == 0, status.stderr
        assert "Schema changes not acknowledged (4;" in status.stdout, status.stdout
        report = json.loads(inst.command("status", "--json").stdout)
        ids = {c["change_id"] for c in report["schema_changes"]}
        assert {(c["field"], c["change"]) for c in report["schema_changes"]} == {
            ("rank", "retyped"),
            ("tags", "added"),
            ("tags", "retyped"),
            ("tokens", "removed"),
        }
        listed = inst.command("drift")
        assert listed.returncode == 0, listed.stderr
        assert all(i in listed.stdout for i in ids), listed.stdout

        wrong = inst.command("drift", "--acknowledge", "nosuchid")
        assert wrong.returncode == 1
        assert wrong.stderr.startswith("error: no schema change 'nosuchid'"), wrong.stderr

        ack = inst.command("drift", "--acknowledge", "all")
        assert ack.returncode == 0, ack.stderr
        assert "acknowledged 4 schema change(s)" in ack.stdout, ack.stdout
        status = inst.command("status")
        assert "not acknowledged" not in status.stdout
        assert "Schema changes: none to acknowledge" in status.stdout, status.stdout
        assert json.loads(inst.command("status", "--json").stdout)["schema_changes"] == []
        assert wh.count("ops.schema_changes", "acknowledged_at is null") == 0

        # 5. acknowledged: the same answers raise nothing
        fake.set_snapshot(None, t4 + FIVE_MINUTES)
        assert drift_lines(inst.cycle()) == []
        assert len(webhook.delivered()) == 4
        assert prices_at(wh, t4 + FIVE_MINUTES) == baseline_prices
