"""The pipeline's log lines: one per event, each starting with an ISO-8601 UTC timestamp, then who
speaks. The ingest's lines carry their level (`ingest: warning: ...`); the cycle's
(`run_pipeline: ...`) and dbt's (`dbt: ...`) say `error:` or `warning:` in the message itself,
as they did when the cycle was a shell script. dbt's lines go to stdout (where dbt prints them),
the others to stderr."""

from __future__ import annotations

import logging
import sys
import time

_WITH_LEVEL = ("ingest",)
_PLAIN = ("run_pipeline", "dbt", "coincap_elt")


def configure_logging() -> None:
    for level in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    for names, fmt in (
        (_WITH_LEVEL, "%(asctime)s %(name)s: %(levelname)s: %(message)s"),
        (_PLAIN, "%(asctime)s %(name)s: %(message)s"),
    ):
        formatter = logging.Formatter(fmt, datefmt="%Y-%m-%dT%H:%M:%SZ")
        formatter.converter = time.gmtime
        for name in names:
            logger = logging.getLogger(name)
            if any(getattr(h, "_coincap", False) for h in logger.handlers):
                continue  # configured already (one process may run several commands in tests)
            handler = logging.StreamHandler(sys.stdout if name == "dbt" else sys.stderr)
            handler.setFormatter(formatter)
            handler._coincap = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
            logger.setLevel(logging.INFO)
            logger.propagate = False


def first_line(value: object, default: str = "") -> str:
    """The first line of a message or an error's text, at most 300 characters; `default` (else
    the error's type) when it has none: what a one-line `error:` or `warning:` quotes."""
    text = str(value or "").strip()
    if text:
        return text.splitlines()[0][:300]
    return default or (type(value).__name__ if isinstance(value, BaseException) else "")
