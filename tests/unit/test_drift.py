"""ingest/drift.py in-process: the JSON kinds of what CoinCap sent, and the comparison of one load
with the baseline (added, removed only after SCHEMA_DRIFT_SNAPSHOTS snapshots in a row,
retyped, nulls, the first load, acknowledged changes, a field that comes back, dlt's variant
columns), and the setting's parser. No warehouse is opened."""

from __future__ import annotations

import json

import pytest

from ingest.config import ConfigError, Settings, schema_drift_snapshots_from
from ingest.drift import (
    ASSETS,
    HISTORY,
    Watch,
    acknowledge_in,
    compare,
    compare_variants,
    endpoint_of,
    observe,
    render_changes,
)

ASSET = {"id": "bitcoin", "rank": "1", "priceUsd": "96239.8", "maxSupply": None, "tokens": {}}


def seen(*items: dict) -> dict[str, set[str]]:
    return observe(list(items))


def step(baseline, *items: dict, snapshots: int = 3, now: str = "2026-12-05T05:00:00Z"):
    """One load of /assets answering `items`: (new baseline, [(change, field, old, new)])."""
    new, changes = compare(baseline, ASSETS, seen(*items), snapshots, now)
    return new, [(c.change, c.field, c.old_kind, c.new_kind) for c in changes]


def baseline_of(*items: dict) -> dict:
    base, changes = step(None, *items)
    assert changes == []
    return base


def test_kinds_as_sent_nulls_count_as_sent_without_a_kind():
    kinds = observe(
        [
            {"a": "1", "b": 1, "c": 1.5, "d": True, "e": {}, "f": [], "g": None},
            {"a": None, "g": None, "h": "x"},
            "not an object",
        ]
    )
    assert kinds == {
        "a": {"string"},
        "b": {"number"},
        "c": {"number"},
        "d": {"boolean"},
        "e": {"object"},
        "f": {"array"},
        "g": set(),
        "h": {"string"},
    }
    assert observe("not a list") == {}


def test_the_first_load_sets_the_baseline_silently():
    base, changes = step(None, ASSET)
    assert changes == []
    assert set(base["fields"]) == set(ASSET)
    assert base["fields"]["rank"]["kinds"] == ["string"]
    # the same answer again: nothing
    assert step(base, ASSET)[1] == []


def test_an_added_field_is_raised_once():
    base = baseline_of(ASSET)
    base, changes = step(base, {**ASSET, "launchDate": "2009-01-03"})
    assert changes == [("added", "launchDate", None, "string")]
    assert step(base, {**ASSET, "launchDate": "2009-01-03"})[1] == []


def test_a_field_is_removed_only_after_n_snapshots_in_a_row():
    base = baseline_of(ASSET)
    without = {k: v for k, v in ASSET.items() if k != "tokens"}
    base, first = step(base, without, snapshots=3, now="t1")
    base, second = step(base, without, snapshots=3, now="t2")
    assert first == second == []
    base, third = step(base, without, snapshots=3, now="t3")
    assert third == [("removed", "tokens", "object", None)]
    assert base["fields"]["tokens"]["missing_since"] == "t1"
    # raised once: the fourth snapshot without it says nothing more
    assert step(base, without, snapshots=3)[1] == []


def test_a_field_back_before_n_snapshots_is_no_change_and_the_count_restarts():
    base = baseline_of(ASSET)
    without = {k: v for k, v in ASSET.items() if k != "tokens"}
    base, _ = step(base, without, snapshots=2)
    base, back = step(base, ASSET, snapshots=2)
    assert back == []
    base, once_more = step(base, without, snapshots=2)
    assert once_more == []  # one snapshot without it again, not two in a row
    assert step(base, without, snapshots=2)[1] == [("removed", "tokens", "object", None)]


def test_a_field_sent_again_after_it_was_removed_is_added():
    base = baseline_of(ASSET)
    without = {k: v for k, v in ASSET.items() if k != "tokens"}
    base, removed = step(base, without, snapshots=1)
    assert removed == [("removed", "tokens", "object", None)]
    base, back = step(base, ASSET, snapshots=1)
    assert back == [("added", "tokens", None, "object")]
    assert step(base, ASSET, snapshots=1)[1] == []


def test_a_type_change_is_raised_once_and_a_flip_back_is_no_change_until_acknowledged():
    base = baseline_of(ASSET)
    base, changes = step(base, {**ASSET, "rank": 1})
    assert changes == [("retyped", "rank", "string", "number")]
    base, again = step(base, {**ASSET, "rank": 1})
    base, back = step(base, ASSET)
    assert again == back == []
    # one asset sends a number, another a string: both kinds were seen, no change
    assert step(base, {**ASSET, "rank": 1}, {**ASSET, "id": "ethereum"})[1] == []


def test_null_never_makes_a_type_change_and_a_null_field_learns_its_kind_silently():
    base = baseline_of(ASSET)
    assert base["fields"]["maxSupply"]["kinds"] == []
    base, changes = step(base, {**ASSET, "rank": None, "maxSupply": None})
    assert changes == []
    base, changes = step(base, {**ASSET, "maxSupply": "21000000"})
    assert changes == []
    assert base["fields"]["maxSupply"]["kinds"] == ["string"]
    assert step(base, {**ASSET, "maxSupply": 21000000})[1] == [
        ("retyped", "maxSupply", "string", "number")
    ]


def test_acknowledged_changes_are_not_raised_again():
    base = baseline_of(ASSET)
    without = {k: v for k, v in ASSET.items() if k != "tokens"}
    retyped = {**without, "rank": 1}
    base, changes = step(base, retyped, snapshots=1)
    assert sorted(changes) == [
        ("removed", "tokens", "object", None),
        ("retyped", "rank", "string", "number"),
    ]
    for change, name, _, _ in changes:
        acknowledge_in(base, change, name)
    assert "tokens" not in base["fields"]
    assert base["fields"]["rank"]["kinds"] == ["number"]
    assert step(base, retyped, snapshots=1)[1] == []
    # acknowledged: the baseline is what was last sent, so a string rank is a change again
    assert step(base, {**without, "rank": "1"}, snapshots=1)[1] == [
        ("retyped", "rank", "number", "string")
    ]
    # a removed field that was acknowledged and comes back is simply new
    assert step(base, {**retyped, "tokens": {}}, snapshots=1)[1] == [
        ("added", "tokens", None, "object")
    ]


def test_a_baseline_survives_json_and_compares_equal_when_nothing_changed():
    base = baseline_of(ASSET)
    base, _ = step(base, ASSET)
    stored = json.loads(json.dumps(base))
    again, changes = step(stored, ASSET)
    assert changes == [] and again == stored  # nothing to write back


def test_a_variant_column_is_a_type_change_unless_the_kinds_already_said_so():
    base, _ = step(baseline_of(ASSET), {**ASSET, "tags": {"a": 1}})
    columns = ["id", "rank", "tokens", "tags", "_dlt_id"]
    assert compare_variants(base, ASSETS, columns, str.lower, []) == []
    # dlt made tokens__v_text: the kinds did not say so (say, after an acknowledgement)
    found = compare_variants(base, ASSETS, [*columns, "tokens__v_text"], str.lower, [])
    assert [(c.change, c.field, c.old_kind, c.new_kind) for c in found] == [
        ("retyped", "tokens", "object", "text (dlt's type)")
    ]
    assert "tokens__v_text" in found[0].note
    assert compare_variants(base, ASSETS, [*columns, "tokens__v_text"], str.lower, []) == []
    # the kinds raised tags as retyped in this load: its variant column is a note on it
    base, changes = compare(base, ASSETS, seen({**ASSET, "tags": "none"}), 3, "t")
    assert [(c.change, c.field) for c in changes] == [("retyped", "tags")]
    more = compare_variants(base, ASSETS, [*columns, "tags__v_text"], str.lower, changes)
    assert more == [] and "tags__v_text" in changes[0].note


def test_the_client_answers_are_seen_per_endpoint():
    class Client:
        on_answer = None

    client = Client()
    watch = Watch(client)
    client.on_answer("/assets", json.dumps({"data": [{"id": "x", "rank": 1.5}]}).encode())
    client.on_answer("/assets/x/history", b'{"data": [{"time": 1, "priceUsd": "2"}]}')
    client.on_answer("/assets/x/markets", b'{"data": [{"other": 1}]}')
    client.on_answer("/assets", b"not json")
    assert watch.seen == {
        ASSETS: {"id": {"string"}, "rank": {"number"}},
        HISTORY: {"time": {"number"}, "priceUsd": {"string"}},
    }
    assert endpoint_of("assets") == ASSETS and endpoint_of("/assets/a-b/history") == HISTORY


def test_schema_drift_snapshots_setting():
    assert schema_drift_snapshots_from({}) == 3
    assert schema_drift_snapshots_from({"SCHEMA_DRIFT_SNAPSHOTS": " 2 "}) == 2
    assert Settings.from_env({"SCHEMA_DRIFT_SNAPSHOTS": "5"}).schema_drift_snapshots == 5
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(ConfigError, match=r"^SCHEMA_DRIFT_SNAPSHOTS is .*1 or more$"):
            Settings.from_env({"SCHEMA_DRIFT_SNAPSHOTS": bad})


def test_status_lines_for_the_changes_not_acknowledged():
    assert render_changes(None) == []  # no change ever recorded: status says nothing
    assert render_changes([]) == ["Schema changes: none to acknowledge"]
    lines = render_changes(
        [
            {
                "change_id": "3f9c2a1b",
                "detected_at": "2026-12-05T05:10:09Z",
                "endpoint": "/assets",
                "field": "rank",
                "change": "retyped",
                "old_kind": "string",
                "new_kind": "number",
                "acknowledged_at": None,
            }
        ]
    )
    assert lines == [
        "Schema changes not acknowledged (1; `coincap-elt drift --acknowledge ID|all` when "
        "dealt with):",
        "  3f9c2a1b  2026-12-05T05:10:09Z  /assets  retyped `rank` (string -> number)",
    ]
