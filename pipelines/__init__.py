"""Prefect flows and the storage they write. Importing this changes nothing: the offline
defaults for a flow run are set by the process that runs one (see `prefect_defaults`)."""
