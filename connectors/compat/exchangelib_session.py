"""exchangelib's protocol pool, per source: a CA file for one endpoint, and a pool that is
closed (and forgotten) when its source closes.

exchangelib's only hook for the HTTP adapter is the class attribute
``BaseProtocol.HTTP_ADAPTER_CLS``, read by the classmethods ``get_adapter`` and
``raw_session``: setting it patches every protocol of the process. Instead, one protocol's
``create_session`` (the instance method its pool calls for each new session, in
``increase_poolsize`` and ``renew_session``) is wrapped so that its sessions verify the
endpoint against the source's CA — through the adapter, because requests lets
``REQUESTS_CA_BUNDLE`` override a session's own ``verify``.

exchangelib also keeps every protocol in a process-wide cache keyed by (endpoint,
credentials) (``CachingProtocol._protocol_cache``, ``_cache_key``,
``_protocol_cache_lock``); :func:`release` closes a protocol's sessions and drops it from
that cache, so a night that is over holds no connection and the next night starts anew.
Checked with exchangelib 5.6.0; tests/connectors/test_compat_exchangelib_session.py fails
when exchangelib changes any of these.
"""

from __future__ import annotations

from typing import Any

import requests.adapters
from exchangelib.protocol import BaseProtocol, CachingProtocol

__all__ = ["CaAdapter", "release", "verify_with"]


class CaAdapter(requests.adapters.HTTPAdapter):
    """An adapter that verifies every request against one CA file."""

    def __init__(self, ca_file: str, **kwargs: Any) -> None:
        self.ca_file = ca_file
        super().__init__(**kwargs)

    def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        kwargs["verify"] = self.ca_file
        return super().send(request, *args, **kwargs)


def verify_with(protocol: BaseProtocol, ca_file: str) -> None:
    """Make ``protocol``'s sessions (those it creates from now on) verify its endpoint
    against ``ca_file``. Idempotent; other protocols are untouched."""
    if getattr(protocol, "_mailusage_ca_file", None) == ca_file:
        return
    create = type(protocol).create_session

    def create_session() -> Any:
        session = create(protocol)
        # the same pool shape as BaseProtocol.get_adapter: one connection, no retries
        # (exchangelib retries itself)
        size = protocol.CONNECTIONS_PER_SESSION
        adapter = CaAdapter(
            ca_file, pool_block=True, pool_connections=size, pool_maxsize=size, max_retries=0
        )
        session.mount(protocol.service_endpoint, adapter)
        return session

    protocol.create_session = create_session
    protocol._mailusage_ca_file = ca_file


def release(protocol: BaseProtocol) -> None:
    """Close ``protocol``'s pooled sessions and drop it from exchangelib's protocol cache
    (only if the cache still holds this very protocol)."""
    with CachingProtocol._protocol_cache_lock:
        key = CachingProtocol._cache_key(protocol.config)
        cached = CachingProtocol._protocol_cache.get(key)
        if cached is not None and cached[0] is protocol:
            del CachingProtocol._protocol_cache[key]
    with protocol._session_pool_lock:
        protocol.close()
