"""Prefect flows and the storage they write. Importing this sets Prefect's offline defaults."""

import os

# Run flows on a temporary local server with no telemetry unless the operator says otherwise
# (FIELD-NOTES.md: the default startup timeout can expire on 2 busy cores).
for _name, _value in {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ.setdefault(_name, _value)
