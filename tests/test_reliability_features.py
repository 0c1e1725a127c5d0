"""Values that are not numbers, the run log and the alerts, end to end on DuckDB and PostgreSQL.

Every cycle is the real `scripts/run_pipeline.sh` (ingest, `dbt build`, `dbt source freshness`,
the run log) against a real warehouse; CoinCap (devkit/fake_coincap.py) and the Slack-compatible
webhook (`WebhookReceiver`, devkit/webhook.py) are local HTTP fakes. One scenario per engine,
five cycles:

1. CoinCap's clock two hours behind (stale) and a webhook that answers 500: the cycle exits 0 and
   only warns that the alert was not delivered;
2. still stale, five assets with values that are not numbers, the webhook back: the others load,
   those five are held back with a reason, the build passes; the `stale` alert goes out now;
3. a body that is not JSON: exit 1, one `failed` alert;
4. a refused key: exit 1, no second alert;
5. CoinCap's clock back to now: every asset loads, one `recovered` alert.

Then marts.pipeline_runs holds the five cycles with their status, freshness, rows and requests,
and no alert, run log row or log line carries the API key, a password or the webhook's secret.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from helpers import CycleResult, Installation, Warehouse

from devkit.fake_coincap import ALL_DEFAULT_IDS, DEFAULT_ASSETS, FakeCoinCap, Scripted, now_ms
from devkit.webhook import HOOK_SECRET, WebhookReceiver
from ingest.alerts import hide, notify, redact
from ingest.config import Settings

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
WRONG_KEY = "wrong-key-0b7e2f"

# asset -> (CoinCap field, value sent, mart column, reason) of the values that are not numbers
BAD_VALUES = {
    "bitcoin": ("priceUsd", "NaN", "price_usd", "price_usd: not a number"),
    "ethereum": ("priceUsd", "", "price_usd", "price_usd: missing"),
    "solana": ("priceUsd", "abc", "price_usd", "price_usd: not a number"),
    "cosmos": (
        "priceUsd",
        "1e400",
        "price_usd",
        "price_usd: out of range (more than 20 integer digits after rounding to 18 decimals)",
    ),
    "cardano": ("supply", "Infinity", "supply", "supply: not a number"),
}


def observed_at(ts_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ts_ms)


# --------------------------------------------------------------------------- the webhook
@pytest.fixture
def webhook():
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


# --------------------------------------------------------------------------- one installation
class Install(Installation):
    """An installation (devkit.installation) of every default asset whose alerts go to the
    webhook receiver; `requests` counts CoinCap requests per cycle."""

    def __init__(self, warehouse: Warehouse, fake: FakeCoinCap, webhook: WebhookReceiver, tmp):
        settings = {"ALERT_WEBHOOK_URL": webhook.url}
        super().__init__(warehouse, fake, tmp, asset_ids=ALL_DEFAULT_IDS, settings=settings)
        self.webhook = webhook
        self.requests: list[int] = []

    def cycle(self, **overrides: str | None) -> CycleResult:
        result = super().cycle(**overrides)
        self.requests.append(len(self.fake.requests))
        return result

    def secrets(self) -> list[str]:
        found = [self.fake.api_key, WRONG_KEY, HOOK_SECRET]
        password = self.warehouse.env.get("POSTGRES_PASSWORD")
        if password and len(password) >= 4:
            found.append(password)
        return found


def fct_keys(wh: Warehouse, ts_ms: int) -> set[str]:
    rows = wh.query(
        "select asset_id from marts.fct_asset_prices where observed_at = ?", (observed_at(ts_ms),)
    )
    return {r[0] for r in rows}


def test_bad_values_run_log_and_alerts(warehouse: Warehouse, webhook: WebhookReceiver, tmp_path):
    with FakeCoinCap(api_key="test-coincap-key-7f3a9c") as fake:
        run = Install(warehouse, fake, webhook, tmp_path)
        wh = warehouse

        # 1. CoinCap's clock two hours behind (stale), 20 s into a 5-minute slot; the webhook
        #    failing: the cycle goes on
        t1 = (now_ms() - 2 * 3_600_000) // 300_000 * 300_000 + 20_000
        fake.set_snapshot(DEFAULT_ASSETS, t1)
        webhook.status = 500
        first = run.cycle()
        assert first.returncode == 0, first.describe()
        assert first.lines_with("warning:", "alert could not be delivered"), first.describe()
        assert webhook.posts and not webhook.delivered()
        history_after_first = wh.count("raw.asset_history")

        # 2. a minute later (the same 5-minute slot: see the report on rejected snapshots and
        #    the continuous series), five assets send values that are not numbers; still stale,
        #    the webhook is back
        t2 = fake.advance(60_000)
        fake.snapshot_overrides = {a: {f: v} for a, (f, v, _, _) in BAD_VALUES.items()}
        fake.snapshot_overrides["dogecoin"] = {"maxSupply": ""}  # nullable: "" is no value
        webhook.status = 200
        second = run.cycle()
        assert second.returncode == 0, second.describe()
        good = set(ALL_DEFAULT_IDS) - set(BAD_VALUES)
        assert fct_keys(wh, t2) == good
        rejected = {
            r[0]: r[1:]
            for r in wh.query(
                "select asset_id, rejected_fields, rejected_values, rejection_reason, observed_at, "
                "load_id from marts.fct_rejected_asset_prices"
            )
        }
        assert set(rejected) == set(BAD_VALUES)
        for asset_id, (_, sent, column, reason) in BAD_VALUES.items():
            fields, values, why, at, load_id = rejected[asset_id]
            assert (fields, values, why) == (column, f'{column}="{sent}"', reason), asset_id
            assert at == observed_at(t2) and load_id == wh.load_ids()[-1]
        doge = wh.query(
            "select max_supply from marts.fct_asset_prices where asset_id = 'dogecoin' "
            "and observed_at = ?",
            (observed_at(t2),),
        )
        assert doge == [(None,)]
        assert len(webhook.delivered()) == 1 and "stale" in webhook.delivered()[0]
        fake.snapshot_overrides = {}

        # 3. a body that is not JSON, then 4. a refused key: one alert, not two
        fake.queue(Scripted(200, "<html><body>Bad gateway</body></html>"))
        third = run.cycle()
        assert third.returncode == 1, third.describe()
        fourth = run.cycle(COINCAP_API_KEY=WRONG_KEY)
        assert fourth.returncode == 1, fourth.describe()
        assert len(webhook.delivered()) == 2, webhook.delivered()
        assert "failed" in webhook.delivered()[1]
        assert "unexpected response" in webhook.delivered()[1]

        # 5. CoinCap's clock back to now (the 2-hour gap is filled from history): recovered
        t5 = fake.advance(now_ms() - 60_000 - fake.now_ms)
        fifth = run.cycle()
        assert fifth.returncode == 0, fifth.describe()
        assert fct_keys(wh, t5) == set(ALL_DEFAULT_IDS), "a later cycle is affected"
        assert set(wh.query("select asset_id from marts.fct_rejected_asset_prices")) == {
            (a,) for a in BAD_VALUES
        }
        assert len(webhook.delivered()) == 3, webhook.delivered()
        assert "recovered" in webhook.delivered()[2]

        # every alert: {"text": ...} as JSON, no secret anywhere
        for post in webhook.posts:
            assert post["content_type"] == "application/json"
            assert list(json.loads(post["body"])) == ["text"]
        for secret in run.secrets():
            for post in webhook.posts:
                assert secret not in post["body"], f"a secret in an alert: {post['body']}"
            for result in run.results:
                assert secret not in result.output, f"a secret in the log:\n{result.describe()}"

        # the run log, as analysts read it
        runs = wh.query(
            "select status, failed_step, source_freshness, rows_loaded, coincap_requests, "
            "pending_packages_loaded, load_ids, error, warehouse, started_at, finished_at "
            "from marts.pipeline_runs order by started_at"
        )
        assert [r[0] for r in runs] == ["succeeded", "succeeded", "failed", "failed", "succeeded"]
        assert [r[1] for r in runs] == [None, None, "ingest", "ingest", None]
        assert [r[2] for r in runs] == ["error", "error", "not checked", "not checked", "pass"]
        assert [r[4] for r in runs] == run.requests
        history_gap = wh.count("raw.asset_history") - history_after_first
        n = len(ALL_DEFAULT_IDS)
        assert [r[3] for r in runs] == [n + history_after_first, n, 0, 0, n + history_gap]
        assert history_gap > 0
        assert [r[5] for r in runs] == [0] * 5
        raw_loads = wh.load_ids()
        assert len(raw_loads) == 3, "the run log must not write into raw"
        assert [r[6] for r in runs if r[6]] == raw_loads
        assert runs[0][7] is None and runs[1][7] is None and runs[4][7] is None
        assert "unexpected response" in runs[2][7]
        assert "API key" in runs[3][7] and "401" in runs[3][7]
        assert {r[8] for r in runs} == {wh.engine}
        assert all(r[9] < r[10] for r in runs)
        assert runs[0][9].tzinfo is not None
        for secret in run.secrets():
            assert secret not in repr(runs)


# --------------------------------------------------------------------------- fast unit tests
def test_redact_removes_secrets_and_credentials():
    settings = Settings.from_env(
        {"COINCAP_API_KEY": "k-12345678", "POSTGRES_PASSWORD": "pw-secret"}
    )
    hide(settings.secrets)  # what the command line does once it has read the settings
    text = redact(
        "at https://user:pa55@rest.example/v3?apiKey=k-12345678&x=1 with Bearer abc.def "
        "password pw-secret\nsecond line"
    )
    for secret in ("pa55", "k-12345678", "abc.def", "pw-secret"):
        assert secret not in text
    assert "\n" not in text and "https://***@rest.example" in text


def test_alert_once_per_state_change(tmp_path, webhook):
    settings = Settings.from_env(
        {"ALERT_WEBHOOK_URL": webhook.url, "COINCAP_RUN_DIR": str(tmp_path)}
    )
    for state in ["ok", "failed", "failed", "stale", "stale", "ok", "ok"]:
        notify(settings, state, "because")
    texts = webhook.delivered()
    assert len(texts) == 3, texts
    assert "failed" in texts[0] and "stale" in texts[1] and "recovered" in texts[2]
    assert "was stale" in texts[2]
