"""CoinCap ELT ingest step: a dlt pipeline that loads CoinCap v3 figures into the `raw` schema.

Run it with `python -m ingest`; `scripts/run_pipeline.sh` runs it and then `dbt build`.
"""
