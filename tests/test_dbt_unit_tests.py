"""dbt's unit tests: the casting, the hold-back of values that are not numbers, the OHLC and the
incremental logic, each checked against fixed rows.

A cycle leaves them out (`ingest/transform.py` runs `dbt build --exclude-resource-type
unit_test`): they check the SQL, not the data, so running them every 5 minutes in production
would cost time and prove nothing new. They run here, on both engines, against a warehouse a
real cycle has just built (dbt needs the models' parents to exist to read their column types).
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import (
    API_KEY,
    Warehouse,
    base_env,
    run_cycle,
    run_dbt_unit_tests,
    unit_tests_defined,
)

from devkit.fake_coincap import FakeCoinCap


def test_dbt_unit_tests_pass_and_the_cycle_leaves_them_out(
    warehouse: Warehouse, fake_coincap: FakeCoinCap, tmp_path: Path
) -> None:
    env = {
        **base_env(tmp_path),
        **warehouse.env,
        "COINCAP_API_KEY": API_KEY,
        "COINCAP_BASE_URL": fake_coincap.base_url,
    }
    cycle = run_cycle(env)
    assert cycle.returncode == 0, cycle.describe()
    # dbt names a unit test `unit_test` (START lines) and `<model>::<test>` (results); a bare
    # "unit_test" would also match the tmp path in dbt's "Performance info: ..." line
    ran_unit_tests = [ln for ln in cycle.lines if re.search(r"\bunit_test\b|::test_", ln)]
    assert not ran_unit_tests, "the cycle ran dbt's unit tests"

    returncode, out, passed = run_dbt_unit_tests(env)
    assert returncode == 0, out
    assert passed == unit_tests_defined(), out
    assert re.search(r"Done\. PASS=\d+ WARN=0 ERROR=0 SKIP=0", out), out
