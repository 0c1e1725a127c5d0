"""The dashboard's definition: what analysts see in Metabase, as data.

Two dashboard filters (Asset, Date range) and the native-SQL questions on the marts (CARDS), each
with a field filter per dashboard filter, and the shapes Metabase's API takes for them
(`card_body`, `dashboard_parameters`, `parameter_mappings`, `dashcards`). Pure: no HTTP, no
warehouse; `ingest.metabase.provision` sends these to Metabase.

Card names, SQL and the ids derived from names (`stable_id`) are what a later run finds the
questions, tags and filters by: renaming a card makes the next run create a new question and leave
the old one in the collection.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

COLLECTION_NAME = "CoinCap"
COLLECTION_DESCRIPTION = (
    "CoinCap market data from the marts (provisioned by `coincap-elt metabase`)"
)
DASHBOARD_NAME = "CoinCap market overview"
DASHBOARD_DESCRIPTION = (
    "Prices, daily OHLC and market-cap share of the configured CoinCap assets, from the dbt marts. "
    "Provisioned by `coincap-elt metabase`; declared as the dbt exposure "
    "coincap_market_overview."
)
MARTS_SCHEMA = "marts"


@dataclass(frozen=True)
class DashboardFilter:
    """A dashboard filter, wired to the template tag of the same name in every card.

    The mart column it acts on is each card's own: CardSpec.filter_columns[slug].
    """

    slug: str
    name: str
    type: str  # Metabase's parameter type, also the tags' widget-type
    section_id: str
    default: str | None


# The analyst's two filters: pick assets, pick dates (a month, a range, "past 30 days"...).
ASSET_FILTER = DashboardFilter("asset", "Asset", "string/=", "string", None)
# "past30days~": the 30 days before today and today (Metabase's relative-date syntax)
DATE_FILTER = DashboardFilter("date_range", "Date range", "date/all-options", "date", "past30days~")
FILTERS: tuple[DashboardFilter, ...] = (ASSET_FILTER, DATE_FILTER)


@dataclass(frozen=True)
class CardSpec:
    """One native-SQL question and where it sits on the dashboard (24-column grid).

    Its SQL reads the mart ``table`` without an alias and has ``{{asset}}`` and ``{{date_range}}``
    in that read's WHERE: Metabase replaces a field filter with a condition on
    ``"marts"."<table>"."<column>"``, and with ``1 = 1`` when the filter is empty.
    """

    name: str
    description: str
    table: str
    filter_columns: dict[str, str]  # filter slug -> column of `table`
    sql: str
    display: str
    visualization_settings: dict[str, Any]
    row: int
    col: int
    size_x: int
    size_y: int


def percent(*columns: str) -> dict[str, Any]:
    """Show these result columns as percentages (the marts store fractions: 0.05 is 5 %)."""
    return {
        "column_settings": {
            json.dumps(["name", column]): {"number_style": "percent"} for column in columns
        }
    }


DAILY = {"asset": "asset_id", "date_range": "price_date"}


def daily_line(
    name: str, description: str, table: str, column: str, row: int, col: int
) -> CardSpec:
    """A line per asset of one percentage column of a daily mart over the chosen dates."""
    return CardSpec(
        name=name,
        description=description,
        table=table,
        filter_columns=DAILY,
        sql=(
            "select\n"
            "    price_date,\n"
            "    asset_id,\n"
            f"    {column}\n"
            f"from marts.{table}\n"
            "where {{asset}} and {{date_range}}\n"
            "order by price_date, asset_id"
        ),
        display="line",
        visualization_settings={
            "graph.dimensions": ["price_date", "asset_id"],
            "graph.metrics": [column],
            **percent(column),
        },
        row=row,
        col=col,
        size_x=12,
        size_y=7,
    )


# Only the mart models' contract columns (dbt_project/models/marts/_marts__*.yml), documented there.
CARDS: tuple[CardSpec, ...] = (
    CardSpec(
        name="Latest prices",
        description=(
            "Each chosen asset's last CoinCap observation within the chosen dates "
            "(the latest one when the dates reach today), by market cap."
        ),
        table="fct_asset_prices",
        filter_columns={"asset": "asset_id", "date_range": "observed_at"},
        # one backward index probe per asset (the key is asset_id, observed_at), not a scan of
        # every observation in the dates
        sql=(
            "select last_prices.*\n"
            "from marts.dim_assets as assets\n"
            "cross join lateral (\n"
            "    select\n"
            "        asset_id,\n"
            "        symbol,\n"
            "        name,\n"
            "        rank,\n"
            "        price_usd,\n"
            "        change_percent_24h,\n"
            "        market_cap_usd,\n"
            "        volume_usd_24h,\n"
            "        observed_at\n"
            "    from marts.fct_asset_prices\n"
            "    where {{asset}} and {{date_range}}\n"
            "        and fct_asset_prices.asset_id = assets.asset_id\n"
            "    order by observed_at desc\n"
            "    limit 1\n"
            ") as last_prices\n"
            "order by last_prices.market_cap_usd desc nulls last, last_prices.asset_id"
        ),
        display="table",
        visualization_settings={},
        row=0,
        col=0,
        size_x=12,
        size_y=6,
    ),
    CardSpec(
        name="Share of total market cap",
        description=(
            "Each chosen asset's share of the summed market cap of all the configured assets "
            "(not of the whole crypto market), on the last day of the chosen dates."
        ),
        table="fct_market_share_daily",
        filter_columns=DAILY,
        sql=(
            "with shares as (\n"
            "    select\n"
            "        asset_id,\n"
            "        price_date,\n"
            "        market_share,\n"
            "        market_share_rank\n"
            "    from marts.fct_market_share_daily\n"
            "    where {{asset}} and {{date_range}}\n"
            ")\n"
            "\n"
            "select\n"
            "    asset_id,\n"
            "    market_share,\n"
            "    market_share_rank,\n"
            "    price_date\n"
            "from shares\n"
            "where price_date = (select max(price_date) from shares)\n"
            "order by market_share_rank, asset_id"
        ),
        display="row",
        visualization_settings={
            "graph.dimensions": ["asset_id"],
            "graph.metrics": ["market_share"],
            **percent("market_share"),
        },
        row=0,
        col=12,
        size_x=12,
        size_y=6,
    ),
    CardSpec(
        name="Price history per asset",
        description=(
            "Price in USD over the chosen dates, one line per asset (log scale), from the "
            "continuous 5-minute series: the price at the end of each of at most 200 equal "
            "slices of the dates, so that a year draws as fast as a day."
        ),
        table="fct_asset_price_history",
        filter_columns={"asset": "asset_id", "date_range": "price_at"},
        # the series is on a 5-minute grid: the slice ends are grid points, counted back from
        # the last one, and read by key (asset_id, price_at) rather than by a scan of the dates
        sql=(
            "with bounds as (\n"
            "    select\n"
            "        max(price_at) as last_price_at,\n"
            "        300 * greatest(\n"
            "            1, ceil(extract(epoch from max(price_at) - min(price_at)) / 300 / 200)\n"
            "        ) as slice_seconds\n"
            "    from marts.fct_asset_price_history\n"
            "    where {{asset}} and {{date_range}}\n"
            "),\n"
            "\n"
            "slice_ends as (\n"
            "    select\n"
            "        bounds.last_price_at\n"
            "        - interval '1 second' * cast(bounds.slice_seconds * slice_number as integer)\n"
            "            as price_at\n"
            "    from bounds\n"
            "    cross join generate_series(0, 200) as slices (slice_number)\n"
            ")\n"
            "\n"
            "select\n"
            "    price_at,\n"
            "    asset_id,\n"
            "    price_usd\n"
            "from marts.fct_asset_price_history\n"
            "where {{asset}} and {{date_range}}\n"
            "    and price_at in (select slice_ends.price_at from slice_ends)\n"
            "order by price_at, asset_id"
        ),
        display="line",
        visualization_settings={
            "graph.dimensions": ["price_at", "asset_id"],
            "graph.metrics": ["price_usd"],
            "graph.y_axis.scale": "log",
        },
        row=6,
        col=0,
        size_x=24,
        size_y=8,
    ),
    CardSpec(
        name="Cumulative return",
        description=(
            "Return since the first chosen day's close, per asset: close / first close - 1, "
            "from the daily closes (UTC days) of fct_asset_returns_daily."
        ),
        table="fct_asset_returns_daily",
        filter_columns=DAILY,
        sql=(
            "with closes as (\n"
            "    select\n"
            "        asset_id,\n"
            "        price_date,\n"
            "        close_price_usd\n"
            "    from marts.fct_asset_returns_daily\n"
            "    where {{asset}} and {{date_range}}\n"
            "),\n"
            "\n"
            "first_closes as (\n"
            "    select distinct on (asset_id)\n"
            "        asset_id,\n"
            "        close_price_usd as first_close_price_usd\n"
            "    from closes\n"
            "    order by asset_id, price_date\n"
            ")\n"
            "\n"
            "select\n"
            "    closes.price_date,\n"
            "    closes.asset_id,\n"
            "    closes.close_price_usd / first_closes.first_close_price_usd - 1\n"
            "        as cumulative_return\n"
            "from closes\n"
            "inner join first_closes on closes.asset_id = first_closes.asset_id\n"
            "order by closes.price_date, closes.asset_id"
        ),
        display="line",
        visualization_settings={
            "graph.dimensions": ["price_date", "asset_id"],
            "graph.metrics": ["cumulative_return"],
            **percent("cumulative_return"),
        },
        row=14,
        col=0,
        size_x=12,
        size_y=7,
    ),
    daily_line(
        "Drawdown from peak",
        "How far each day's close is below the highest close so far (0 at a new high, "
        "-0.5 is half the value lost): `drawdown` of fct_asset_returns_daily.",
        "fct_asset_returns_daily",
        "drawdown",
        row=14,
        col=12,
    ),
    daily_line(
        "Volatility, 30 days, annualised",
        "Standard deviation of the one-day log returns over the 30 days up to each day, "
        "times the square root of 365 (crypto trades every day): "
        "`annualized_volatility_30d` of fct_asset_returns_daily.",
        "fct_asset_returns_daily",
        "annualized_volatility_30d",
        row=21,
        col=0,
    ),
    daily_line(
        "Market share over time",
        "Each chosen asset's daily share of the summed market cap of the configured assets "
        "(not of the whole crypto market): `market_share` of fct_market_share_daily.",
        "fct_market_share_daily",
        "market_share",
        row=21,
        col=12,
    ),
    CardSpec(
        name="Correlation of daily returns",
        description=(
            "Pearson correlation of the chosen assets' one-day log returns over the chosen "
            "dates, each pair once. Empty below 20 days both assets have a return on "
            "(`overlap_days`), as in fct_asset_correlations_30d, which holds the last 30 days."
        ),
        table="fct_asset_returns_daily",
        filter_columns=DAILY,
        sql=(
            "with one_day_returns as (\n"
            "    select\n"
            "        asset_id,\n"
            "        price_date,\n"
            "        cast(log_return as double precision) as log_return\n"
            "    from marts.fct_asset_returns_daily\n"
            "    where {{asset}} and {{date_range}}\n"
            "        and days_since_previous_close = 1\n"
            ")\n"
            "\n"
            "select\n"
            "    one_day_returns.asset_id,\n"
            "    other_returns.asset_id as other_asset_id,\n"
            "    count(*) as overlap_days,\n"
            "    case\n"
            "        when\n"
            "            count(*) >= 20\n"
            "            and var_samp(one_day_returns.log_return) > 0\n"
            "            and var_samp(other_returns.log_return) > 0\n"
            "            then round(\n"
            "                cast(corr(one_day_returns.log_return, other_returns.log_return)\n"
            "                    as numeric), 4\n"
            "            )\n"
            "    end as correlation\n"
            "from one_day_returns\n"
            "inner join one_day_returns as other_returns\n"
            "    on one_day_returns.price_date = other_returns.price_date\n"
            "    and one_day_returns.asset_id < other_returns.asset_id\n"
            "group by one_day_returns.asset_id, other_returns.asset_id\n"
            "order by one_day_returns.asset_id, other_returns.asset_id"
        ),
        display="table",
        visualization_settings={},
        row=28,
        col=0,
        size_x=12,
        size_y=7,
    ),
    CardSpec(
        name="Daily returns",
        description=(
            "Per asset and UTC day: close, simple and log return against the previous close, "
            "7- and 30-day annualised volatility, drawdown, and whether the day has all its "
            "288 five-minute points (`is_complete_day`)."
        ),
        table="fct_asset_returns_daily",
        filter_columns=DAILY,
        sql=(
            "select\n"
            "    price_date,\n"
            "    asset_id,\n"
            "    close_price_usd,\n"
            "    simple_return,\n"
            "    log_return,\n"
            "    annualized_volatility_7d,\n"
            "    annualized_volatility_30d,\n"
            "    drawdown,\n"
            "    observation_count,\n"
            "    is_complete_day\n"
            "from marts.fct_asset_returns_daily\n"
            "where {{asset}} and {{date_range}}\n"
            "order by price_date desc, asset_id"
        ),
        display="table",
        visualization_settings=percent(
            "simple_return", "annualized_volatility_7d", "annualized_volatility_30d", "drawdown"
        ),
        row=28,
        col=12,
        size_x=12,
        size_y=7,
    ),
    CardSpec(
        name="Daily OHLC",
        description=(
            "Open, high, low and close price per asset and UTC day, "
            "with the number of observations."
        ),
        table="fct_asset_prices_daily",
        filter_columns=DAILY,
        sql=(
            "select\n"
            "    price_date,\n"
            "    asset_id,\n"
            "    open_price_usd,\n"
            "    high_price_usd,\n"
            "    low_price_usd,\n"
            "    close_price_usd,\n"
            "    observation_count\n"
            "from marts.fct_asset_prices_daily\n"
            "where {{asset}} and {{date_range}}\n"
            "order by price_date desc, asset_id"
        ),
        display="table",
        visualization_settings={},
        row=35,
        col=0,
        size_x=24,
        size_y=8,
    ),
)


def stable_id(*parts: str) -> str:
    """The same id on every run for the same object, so that a second run finds it unchanged."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "coincap-elt/metabase/" + "/".join(parts)))


def parameter_id(dashboard_filter: DashboardFilter) -> str:
    return stable_id("dashboard", DASHBOARD_NAME, dashboard_filter.slug)[:8]  # as Metabase's own


def filter_fields() -> set[tuple[str, str]]:
    """(table, column) of every mart column a card's field filter acts on: what Metabase must
    have synced before the questions can be created."""
    return {(spec.table, column) for spec in CARDS for column in spec.filter_columns.values()}


def template_tags(spec: CardSpec, field_ids: dict[tuple[str, str], int]) -> dict[str, Any]:
    """The card's field filters, one per dashboard filter, on the mart's own columns."""
    return {
        f.slug: {
            "id": stable_id("card", spec.name, f.slug),
            "name": f.slug,
            "display-name": f.name,
            "type": "dimension",
            "dimension": ["field", field_ids[(spec.table, spec.filter_columns[f.slug])], None],
            "widget-type": f.type,
            "required": False,
        }
        for f in FILTERS
    }


def card_body(
    spec: CardSpec, database_id: int, collection_id: int, field_ids: dict[tuple[str, str], int]
) -> dict[str, Any]:
    """The question as `POST /api/card` and `PUT /api/card/:id` take it; ``field_ids`` maps
    (table, column) to Metabase's field id (`provision.mart_fields`)."""
    tags = template_tags(spec, field_ids)
    return {
        "name": spec.name,
        "description": spec.description,
        "collection_id": collection_id,
        "type": "question",
        "display": spec.display,
        "visualization_settings": spec.visualization_settings,
        "dataset_query": {
            "type": "native",
            "database": database_id,
            "native": {"query": spec.sql, "template-tags": tags},
        },
        # the question's own filter widgets, when opened outside the dashboard
        "parameters": [
            {
                "id": tags[f.slug]["id"],
                "type": f.type,
                "target": ["dimension", ["template-tag", f.slug]],
                "name": f.name,
                "slug": f.slug,
            }
            for f in FILTERS
        ],
    }


def dashboard_parameters() -> list[dict[str, Any]]:
    """The dashboard's filters as `PUT /api/dashboard/:id` takes them."""
    parameters = []
    for f in FILTERS:
        parameter: dict[str, Any] = {
            "id": parameter_id(f),
            "name": f.name,
            "slug": f.slug,
            "type": f.type,
            "sectionId": f.section_id,
        }
        if f.default is not None:
            parameter["default"] = f.default
        parameters.append(parameter)
    return parameters


def parameter_mappings(card_id: int) -> list[dict[str, Any]]:
    """Every dashboard filter to the card's template tag of the same name."""
    return [
        {
            "parameter_id": parameter_id(f),
            "card_id": card_id,
            "target": ["dimension", ["template-tag", f.slug]],
        }
        for f in FILTERS
    ]


def dashcards(card_ids: dict[str, int], existing: dict[int, int]) -> list[dict[str, Any]]:
    """The dashboard's cards laid out on its grid, each wired to both filters. ``card_ids``: card
    name -> question id; ``existing``: question id -> id of the dashcard already showing it, which
    keeps its id (a new one gets a negative id, Metabase's convention)."""
    wanted: list[dict[str, Any]] = []
    for n, spec in enumerate(CARDS, start=1):
        card_id = card_ids[spec.name]
        wanted.append(
            {
                "card_id": card_id,
                "row": spec.row,
                "col": spec.col,
                "size_x": spec.size_x,
                "size_y": spec.size_y,
                "parameter_mappings": parameter_mappings(card_id),
                "visualization_settings": {},
                "series": [],
                "id": existing.get(card_id, -n),
            }
        )
    return wanted
