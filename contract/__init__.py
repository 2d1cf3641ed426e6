"""The contract at the bottom: what every layer agrees on and nothing else.

``contract.datasets`` holds the dataset schemas and the data directory's layout (how a
reader finds a dataset's files); ``contract.people`` the roster's typed person and
``contract.roster`` the roster CSV read into it; ``contract.months`` the month arithmetic;
``contract.domains`` the public/official domain lists and their one suffix rule (which the
SQL calls too); ``contract.usage`` the share rule; ``contract.files`` the one atomic file
writer; ``contract.arrays`` Arrow arrays built from Python values without pyarrow importing
pandas. These modules import no other mailusage package: connectors, storage, analytics
and pipelines all import them, never the other way round.
"""
