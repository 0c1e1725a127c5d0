"""Data-quality warnings end to end, on DuckDB and PostgreSQL: an asset missing from CoinCap's
answers, figures that stopped changing, a 5-minute price move of more than PRICE_MOVE_ALERT_PCT.

Every cycle is the real `scripts/run_pipeline.sh` (ingest, `dbt build`, the checks of
ingest/quality.py) against a real warehouse; CoinCap (devkit/fake_coincap.py) and the webhook
(devkit/webhook.py) are local HTTP fakes. CoinCap's clock moves between cycles (never the
machine's), starting 70 minutes in the past. Seven cycles of three assets:

    cycle  CoinCap time  CoinCap's answer                      data-quality alerts (new)
    1      t0            bitcoin, ethereum, solana             -
    2      t0+5 min      solana missing, bitcoin's price x2    bitcoin moved +100 %
    3      t0+10 min     solana missing (2nd)                  -
    4      t0+15 min     solana missing (3rd)                  solana missing
    5      t0+20 min     solana missing                        -
    6      t0+60 min     bitcoin's volume changes              ethereum frozen (60 min)
    7      t0+65 min     the same                              -

Every cycle exits 0; each finding is a `warning:` line naming the asset in every cycle it holds,
and one alert per episode. The large move stays in the marts, flagged.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from helpers import Installation, Warehouse

from devkit.fake_coincap import DEFAULT_ASSETS, FIVE_MINUTES_MS, FakeCoinCap, now_ms
from devkit.webhook import WebhookReceiver

MINUTE_MS = 60_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
ASSETS = ["bitcoin", "ethereum", "solana"]
ANSWER = {a["id"]: a for a in copy.deepcopy(DEFAULT_ASSETS) if a["id"] in ASSETS}


def answer(*ids: str, **changes: dict[str, str]) -> list[dict]:
    """CoinCap's answer with only `ids`, each asset's fields changed as `changes` says."""
    return [{**ANSWER[i], **changes.get(i, {})} for i in ids]


@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def test_missing_frozen_and_large_moves_warn_and_alert_once(
    warehouse: Warehouse, webhook: WebhookReceiver, tmp_path
):
    # 2 min 3 s into a 5-minute slot: every snapshot lands in its own slot, one after the other
    t0 = now_ms() - 70 * MINUTE_MS
    t0 = t0 - t0 % FIVE_MINUTES_MS + 2 * MINUTE_MS + 3_000
    doubled = {"priceUsd": str(Decimal(ANSWER["bitcoin"]["priceUsd"]) * 2)}
    script = [
        (0, answer(*ASSETS)),
        (5, answer("bitcoin", "ethereum", bitcoin=doubled)),
        (10, None),
        (15, None),
        (20, None),
        (60, answer("bitcoin", "ethereum", bitcoin={**doubled, "volumeUsd24Hr": "1.5"})),
        (65, None),
    ]
    settings = {
        "ALERT_WEBHOOK_URL": webhook.url,
        "COINCAP_BACKFILL_DAYS": "0",
        "PRICE_MOVE_ALERT_PCT": "50",
    }
    with FakeCoinCap(api_key="test-coincap-key-7f3a9c", timestamp_ms=t0) as fake:
        inst = Installation(warehouse, fake, tmp_path, asset_ids=ASSETS, settings=settings)
        alerts: list[list[str]] = []  # the data-quality messages each cycle sent
        quality_lines: list[list[str]] = []  # its `warning: data quality:` lines
        for minutes, assets in script:
            fake.set_snapshot(assets, t0 + minutes * MINUTE_MS)
            before = len(webhook.delivered())
            result = inst.cycle()
            assert result.returncode == 0, result.describe()
            alerts.append([m for m in webhook.delivered()[before:] if "data quality" in m])
            quality_lines.append(result.lines_with("warning: data quality:"))

        def lines(cycle: int, *fragments: str) -> list[str]:
            return [ln for ln in quality_lines[cycle - 1] if all(f in ln for f in fragments)]

        report = "\n".join(
            f"cycle {i + 1}: alerts {a}\n  lines {q}"
            for i, (a, q) in enumerate(zip(alerts, quality_lines, strict=True))
        )
        # one alert per episode, in the cycle the episode is first found, nothing more
        assert [len(a) for a in alerts] == [0, 1, 0, 1, 0, 1, 0], report
        assert "bitcoin" in alerts[1][0] and "+100.0 %" in alerts[1][0], report
        assert "solana" in alerts[3][0] and "missing" in alerts[3][0], report
        assert "ethereum" in alerts[5][0] and "not changed" in alerts[5][0], report

        # missing: not on the 1st or 2nd answer without it, on the 3rd and after, by name
        assert not lines(2, "solana") and not lines(3, "solana"), report
        assert lines(4, "solana", "missing") and lines(5, "solana", "missing"), report
        # the move: a warning in the cycles while it is among the newest hour of the series
        assert lines(2, "bitcoin", "moved +100.0 %") and lines(3, "bitcoin", "moved"), report
        assert not lines(7, "bitcoin"), report
        # frozen: ethereum's figures from t0 to t0+60 min; bitcoin's changed at +5 and +60 min
        assert not any(lines(c, "ethereum") for c in range(1, 6)), report
        assert lines(6, "ethereum", "not changed") and lines(7, "ethereum"), report
        assert not any(lines(c, "bitcoin", "not changed") for c in range(1, 8)), report

        # the move stays in the marts: the observation as sent, its slot flagged
        doubled_at = EPOCH + timedelta(milliseconds=t0 + 5 * MINUTE_MS)
        assert warehouse.query(
            "select price_usd from marts.fct_asset_prices "
            "where asset_id = 'bitcoin' and observed_at = ?",
            (doubled_at,),
        ) == [(Decimal(doubled["priceUsd"]),)]
        flagged = warehouse.query(
            "select price_at, price_change_pct_5m from marts.fct_asset_price_history "
            "where is_large_price_move order by asset_id, price_at"
        )
        slot = doubled_at - timedelta(minutes=2, seconds=3)
        assert [(p.astimezone(UTC), pct) for p, pct in flagged] == [(slot, Decimal(100))], flagged
        assert warehouse.count("marts.fct_rejected_asset_prices") == 0

        # `coincap-elt status` shows the findings that hold now
        status = inst.command("status")
        assert status.returncode == 0, status.stderr
        out = status.stdout
        assert "Data quality:" in out, out
        assert [ln for ln in out.splitlines() if "solana" in ln and "missing" in ln], out
        assert [ln for ln in out.splitlines() if "ethereum" in ln and "not changed" in ln], out
        assert not [ln for ln in out.splitlines() if "bitcoin" in ln and "moved" in ln], out
