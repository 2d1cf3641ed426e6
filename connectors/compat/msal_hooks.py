"""MSAL token-cache surgery: drop the cached access tokens so the next call gets a new one.

``acquire_token_for_client`` answers from the cache while a token is valid, and has no
"force refresh"; after a 401 (a token revoked early) connectors/graph.py drops the cached
access tokens with ``TokenCache.search("AccessToken")`` and ``TokenCache.remove_at``, which
MSAL documents only in its source. Checked with msal 1.39.0.
"""

from __future__ import annotations

from typing import Any

__all__ = ["drop_access_tokens"]


def drop_access_tokens(cache: Any) -> None:
    """Remove every access token from an MSAL ``TokenCache`` (refresh tokens stay)."""
    # A list first: search is a generator over the cache's own dict, and remove_at inside
    # it raises "dictionary changed size during iteration".
    for token in list(cache.search("AccessToken")):
        cache.remove_at(token)
