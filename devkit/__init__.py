"""The development kit: what the tests and the benchmarks share.

The local fakes of CoinCap (`devkit.fake_coincap`) and Metabase (`devkit.fake_metabase`), a
throwaway PostgreSQL server (`devkit.postgres_cluster`), and the one installation helper
(`devkit.installation`: a fresh warehouse, a cycle's environment, cycles and commands run as a
user runs them, and queries of the result).

Not part of the product: the package `ingest` is what is installed (pyproject.toml's setuptools
`include = ["ingest*"]`), and the image copies neither devkit/ nor tests/ (.dockerignore).
"""
