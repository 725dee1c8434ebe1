"""Stream leases among nodes, stepped pass by pass on a shared index with a set clock:
an even share each, a joining node handed streams, a dead node's streams taken over
once its leases run out, and a node that cannot renew stops recording first."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from livecut.config import ClusterConfig
from livecut.nodes import Node
from livecut.store.index import Index
from tests.engines import OWN_ENGINES

pytestmark = OWN_ENGINES

STREAMS = ["a", "b", "c", "d"]
LEASE_S = 3.0


class Cluster:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.now = 1_764_000_000.0
        self.recording: dict[str, list[str]] = {}  # node -> streams it records
        self.nodes: dict[str, Node] = {}

    def add(self, name: str) -> Node:
        index = Index(self.path)
        index.node_id = name
        recording = self.recording.setdefault(name, [])

        async def record(stream: str) -> None:
            recording.append(stream)

        async def stop(stream: str) -> None:
            recording.remove(stream)

        node = Node(
            index,
            ClusterConfig(index_url="postgresql://x@127.0.0.1/x", node_id=name, lease_s=LEASE_S),
            streams=lambda: STREAMS,
            record=record,
            stop_recording=stop,
            load=dict,
            url=lambda: None,
            clock=lambda: self.now,
        )
        self.nodes[name] = node
        return node

    async def round(self, *names: str) -> None:
        """One lease pass of each named node (all, if none named), a second apart."""
        for name in names or list(self.nodes):
            await self.nodes[name]._pass()
            await self.nodes[name]._fence()
        self.now += 1.0

    def holders(self) -> dict[str, list[str]]:
        held: dict[str, list[str]] = {}
        for name, streams in self.recording.items():
            for stream in streams:
                held.setdefault(stream, []).append(name)
        return held


@pytest.fixture
async def cluster(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path / "index.sqlite3")


async def test_streams_are_shared_evenly_and_handed_to_a_joining_node(cluster: Cluster) -> None:
    cluster.add("n1")
    await cluster.round()
    assert sorted(cluster.recording["n1"]) == STREAMS  # alone, it records everything
    cluster.add("n2")
    for _ in range(3):
        await cluster.round()
    assert sorted(len(s) for s in cluster.recording.values()) == [2, 2]
    held = cluster.holders()
    assert sorted(held) == STREAMS and all(len(v) == 1 for v in held.values()), held
    cluster.add("n3")
    for _ in range(3):
        await cluster.round()
    assert sorted(len(s) for s in cluster.recording.values()) == [1, 1, 2]
    assert all(len(v) == 1 for v in cluster.holders().values())


async def test_a_dead_nodes_streams_are_taken_once_its_leases_run_out(cluster: Cluster) -> None:
    for name in ("n1", "n2"):
        cluster.add(name)
    for _ in range(3):
        await cluster.round()
    orphans = list(cluster.recording["n1"])
    assert len(orphans) == 2
    # n1 dies: no more passes, no release. Its leases hold for LEASE_S.
    died = cluster.now
    while any(s not in cluster.recording["n2"] for s in orphans):
        await cluster.round("n2")
        assert cluster.now - died <= LEASE_S + 2, "not taken over within a lease and a pass"
    assert cluster.now - died >= LEASE_S, "taken while the dead node's lease still held"
    assert sorted(cluster.recording["n2"]) == STREAMS


async def test_a_node_that_cannot_renew_stops_recording_before_its_lease_runs_out(
    cluster: Cluster,
) -> None:
    node = cluster.add("n1")
    await cluster.round()
    assert sorted(cluster.recording["n1"]) == STREAMS

    async def unreachable(*_: object, **__: object) -> bool:
        raise ConnectionError("PostgreSQL at 127.0.0.1:5432/x is unreachable")

    node.index.cluster.acquire = unreachable  # type: ignore[method-assign]
    renewed = cluster.now - 1.0
    while cluster.recording["n1"]:
        with contextlib.suppress(ConnectionError):
            await node._pass()
        await node._fence()
        assert cluster.now - renewed < LEASE_S, "still recording when the lease ran out"
        cluster.now += 0.25
    assert cluster.now - renewed >= LEASE_S * 2 / 3 - 0.25


async def test_a_node_stopping_hands_its_streams_over_at_once(cluster: Cluster) -> None:
    n1, _ = cluster.add("n1"), cluster.add("n2")
    for _ in range(3):
        await cluster.round()
    await n1.stop()
    del cluster.nodes["n1"]
    assert cluster.recording["n1"] == []
    await cluster.round()  # one pass, no waiting for leases to run out
    assert sorted(cluster.recording["n2"]) == STREAMS
