"""Prefect's offline defaults, set by a process that is about to run a flow (the CLI's
`main`, the benchmarks that run the flows), never as a side effect of an import."""

from __future__ import annotations

import os

# A flow run outside a deployment starts a temporary local server; on 2 busy cores its
# default startup timeout can expire (FIELD-NOTES.md), and it reports telemetry unless told.
DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "DO_NOT_TRACK": "1",
}


def prefect_defaults() -> None:
    """Set each default the operator has not set (their environment always wins)."""
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
