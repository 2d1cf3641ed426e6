"""Network faults between the collector and Dovecot, injected by a loopback proxy."""

from __future__ import annotations

import random

import pytest

from tests.faults.conftest import FULL, NIGHT, World
from tests.faults.proxy import Fault, FaultProxy

_rng = random.Random(1010)
# Byte counts where a cut lands: in the greeting, the login, LIST/STATUS, and deep in FETCH.
CUTS = [40, 400, 1_500, *sorted(_rng.sample(range(1_600, 4_000), 6 if FULL else 2))]
FETCH_SEEDS = list(range(8 if FULL else 3))


def _run(world: World, name: str, faults: dict[int, Fault], **kwargs: object) -> None:
    with FaultProxy(world.server.imap_port, faults) as proxy:
        setup = world.setup(name, port=proxy.port, **kwargs)  # type: ignore[arg-type]
        faulty = setup.collect(NIGHT)
        proxy.faults.clear()  # the night again, without the fault
        world.check(name, setup, faulty)
        assert proxy.stats.fired


@pytest.mark.parametrize("after", CUTS)
def test_cut_every_connection_after_n_bytes(world: World, after: int) -> None:
    _run(world, f"cut every connection after {after:,} bytes", {0: Fault("cut", after, every=True)})


@pytest.mark.parametrize("seed", FETCH_SEEDS)
def test_cut_inside_a_fetch_response(world: World, seed: int) -> None:
    # Every third connection dies at a random point of its first FETCH response.
    faults = {n: Fault("cut_in_fetch", seed=seed) for n in range(1 + seed % 3, 60, 3)}
    _run(world, f"cut inside FETCH responses (seed {seed})", faults)


def test_stalled_connection_times_out(world: World) -> None:
    faults = {n: Fault("stall", after=300 + 900 * (n % 2)) for n in (2, 7, 19)}
    _run(world, "server stops answering (3 connections stall)", faults, timeout=1.5)


def test_refused_connections(world: World) -> None:
    faults = {n: Fault("refuse") for n in range(5, 60, 4)}
    _run(world, "connections refused / reset at accept", faults)


def test_prefect_retries_recover_without_duplicates(world: World, prefect_harness: None) -> None:
    """Through Prefect shard tasks with retries: connections die inside FETCH, the shards
    retry those mailboxes, the night ends with every mailbox ok and each message stored once."""
    # Cut within the first 400 bytes: every mailbox's first FETCH response is longer, so
    # each of these connections that fetches is cut, whatever mailbox it serves.
    faults = {n: Fault("cut_in_fetch", after=400, seed=n) for n in range(1, 40, 3)}
    with FaultProxy(world.server.imap_port, faults) as proxy:
        # A shard retries its mailboxes while other shards still open early connections,
        # so one mailbox can meet several faulted ones: with as many retries as faults,
        # every mailbox surely gets through (most need one).
        setup = world.setup("prefect retries", port=proxy.port, retries=len(faults))
        night = setup.collect(NIGHT, plain=False)
        assert len(proxy.stats.fired) >= 5
        assert night.count("ok") == len(world.mailboxes)
        world.check(
            "cut inside FETCH, retried per mailbox inside Prefect shard tasks the same night",
            setup,
            night,
            min_failed=0,
        )
