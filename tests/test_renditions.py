"""Which renditions of a master playlist are recorded, and that each is recorded in full."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from livecut.config import RenditionSpec
from livecut.hls.playlist import RenditionFilter
from livecut.hls.tracker import Gap
from livecut.ingest.sessions import RenditionTarget, SessionKeeper
from livecut.media.probe import probe_segment
from livecut.store.index import INDEX_FILE
from livecut.store.store import Store
from tests.engines import open_index
from tests.harness import daemon_config
from tests.test_ingest_faults import SEG_MS, Rig, rig

SIZES = [(640, 360), (480, 270), (320, 180)]
LADDER: dict[str, Any] = {
    "variants": SIZES,
    "alternate_audio": ["en", "fr"],
    "subtitles": ["en"],
}
# Rendition names: variants by height, media as <type>-<group>[-<language>]-<NAME>.
V360, V270, V180 = "360p", "270p", "180p"
AUDIO_EN, AUDIO_FR, SUBS_EN = "audio-aud-en", "audio-aud-fr", "subs-subs-en-en"
EXPECTED = {
    "all": [V360, V270, V180, AUDIO_EN, AUDIO_FR, SUBS_EN],
    "best": [V360, AUDIO_EN, SUBS_EN],
    "max_height=270": [V270, V180, AUDIO_EN, SUBS_EN],
}
SPECS: dict[str, RenditionSpec] = {
    "all": "all",
    "best": "best",
    "max_height=270": (RenditionFilter(max_height=270),),
}


async def complete(r: Rig, names: list[str], count: int) -> bool:
    """Every named rendition of the one session holds `count` segments."""
    sessions = await r.sessions()
    if len(sessions) != 1:
        return False
    renditions = await r.renditions(sessions[0])
    if set(renditions) != set(names):
        return False
    for name in names:
        if len(await r.index.rendition_segments(renditions[name].id)) != count:
            return False
    return True


def completed(r: Rig, names: list[str], count: int) -> Callable[[], Awaitable[bool]]:
    """complete() as a predicate for Rig.until."""
    return lambda: complete(r, names, count)


@pytest.mark.parametrize("spec", list(SPECS))
async def test_the_chosen_renditions_are_recorded_in_full_in_one_session(
    data_dir: Path, spec: str
) -> None:
    names = EXPECTED[spec]
    async with rig(data_dir, prefill=3, stream={"renditions": SPECS[spec]}, **LADDER) as r:
        await r.until(completed(r, names, 3))
        r.advance(2)
        await r.until(completed(r, names, 5))
        [session] = await r.sessions()
        assert session.state == "live"
        renditions = await r.renditions(session)
        assert sorted(renditions) == sorted(names), "exactly the chosen ones, nothing else"
        root = r.daemon.store.root
        for name in names:
            rendition = renditions[name]
            segments = await r.index.rendition_segments(rendition.id)
            assert [s.seq for s in segments] == [0, 1, 2, 3, 4], name
            assert [s.start_ms for s in segments] == [r.pdt(i) for i in range(5)], name
            assert await r.index.rendition_gaps(rendition.id) == [], name
            if rendition.kind == "subtitles":
                text = (root / segments[0].path).read_text()
                assert text.startswith("WEBVTT") and "en second" in text
            else:
                probe = probe_segment((root / segments[0].path).read_bytes())
                assert probe.has_video == (rendition.kind == "video")
                assert probe.has_audio == (rendition.kind == "audio")
                assert abs(probe.duration_s - SEG_MS / 1000) < 0.05
        # The best chosen variant is the one clips are cut from.
        assert [n for n in names if renditions[n].main] == [names[0]]
        assert {n: renditions[n].kind for n in names} == {
            n: "video" if n.endswith("p") else "audio" if n.startswith("audio") else "subtitles"
            for n in names
        }
        resolutions = {n: renditions[n].resolution for n in names if n.endswith("p")}
        by_name = {V360: "640x360", V270: "480x270", V180: "320x180"}
        assert resolutions == {n: by_name[n] for n in resolutions}
        assert {renditions[n].language for n in names if not n.endswith("p")} <= {"en", "fr"}
        # Clips see the main rendition: its segments are the stream's.
        assert await r.seqs() == [0, 1, 2, 3, 4]
        status = await r.api_stream()
        assert sorted(status["renditions"]) == sorted(names)
        assert status["segments_recorded"] == 5 * len(names)
        assert (status["state"], status["gaps"], status["errors"]) == ("recording", 0, 0)
        assert (
            status["media_playlist"]
            == f"{r.origin.base_url}/v{SIZES.index(_size(names[0]))}/index.m3u8"
        )
        assert r.errors() == {}


def _size(name: str) -> tuple[int, int]:
    return next(size for size in SIZES if f"{size[1]}p" == name)


async def test_renditions_stay_in_one_session_across_a_discontinuity(data_dir: Path) -> None:
    names = EXPECTED["all"]
    async with rig(data_dir, prefill=2, stream={"renditions": "all"}, **LADDER) as r:
        await r.until(completed(r, names, 2))
        r.origin.restart_encoder()
        r.advance(2)
        await r.until(completed(r, names, 4))
        [session] = await r.sessions()
        for name, rendition in (await r.renditions(session)).items():
            segments = await r.index.rendition_segments(rendition.id)
            assert [(s.seq, s.epoch) for s in segments] == [(0, 0), (1, 0), (2, 1), (3, 1)], name


async def test_a_reset_seen_by_renditions_one_after_another_makes_exactly_two_sessions(
    data_dir: Path,
) -> None:
    names = EXPECTED["all"]
    async with rig(data_dir, prefill=3, stream={"renditions": "all"}, **LADDER) as r:
        await r.until(completed(r, names, 3))
        r.origin.reset_sequence()
        r.advance(2)  # every rendition now lists media sequence 0 and 1 of a new encoder

        async def both_recorded() -> bool:
            sessions = await r.sessions()
            if len(sessions) != 2:
                return False
            renditions = await r.renditions(sessions[1])
            if set(renditions) != set(names):
                return False
            for rendition in renditions.values():
                if len(await r.index.rendition_segments(rendition.id)) != 2:
                    return False
            return True

        await r.until(both_recorded)
        first, second = await r.sessions()
        assert (first.state, first.end_reason) == ("ended", "reset")
        # Where the recording ends; audio-only segments end on their last AAC frame.
        assert first.ended_ms is not None and 0 <= first.ended_ms - r.pdt(3) < 25
        for session, seqs, starts in ((first, [0, 1, 2], [0, 1, 2]), (second, [0, 1], [3, 4])):
            renditions = await r.renditions(session)
            assert sorted(renditions) == sorted(names)
            for name, rendition in renditions.items():
                segments = await r.index.rendition_segments(rendition.id)
                assert [s.seq for s in segments] == seqs, (session.id, name)
                assert [s.start_ms for s in segments] == [r.pdt(i) for i in starts], name
                assert await r.index.rendition_gaps(rendition.id) == [], name


async def test_a_lagging_rendition_commits_old_media_into_the_old_session(tmp_path: Path) -> None:
    """Renditions notice a reset one after another; the keeper keeps their media apart."""
    data = tmp_path / "data"
    data.mkdir()
    store = Store(data, index=await open_index(data / INDEX_FILE))
    clock = [1_000_000.0]
    stream = daemon_config(tmp_path, "http://origin.invalid/master.m3u8").streams[0]
    await store.index.ensure_stream(stream.id, stream.url, 0)
    keeper = SessionKeeper(stream, store, lambda: clock[0])
    video = RenditionTarget(name="360p", uri="http://o/v.m3u8", kind="video", main=True)
    audio = RenditionTarget(name="audio-en", uri="http://o/a.m3u8", kind="audio", main=False)
    try:
        generation = {"360p": keeper.generation, "audio-en": keeper.generation}

        async def commit(target: RenditionTarget, start_ms: int) -> str:
            row = await keeper.rendition_row(
                target, generation=generation[target.name], clock="origin", start_ms=start_ms
            )
            keeper.committed(target.name, session_id=row.session_id, end_ms=start_ms + 1000, size=1)
            return row.session_id

        old = await commit(video, 0)
        assert await commit(audio, 0) == old
        generation["360p"] = await keeper.reset("360p", generation["360p"], "reset")  # video first
        new = await commit(video, 5000)
        assert new != old
        assert await commit(audio, 1000) == old, "audio has not seen the reset yet: old encoder"
        generation["audio-en"] = await keeper.reset("audio-en", generation["audio-en"], "reset")
        assert await commit(audio, 5000) == new, "caught up: no third session"
        sessions = await store.index.sessions_in_opening_order(stream.id)
        assert [(s.id, s.state, s.end_reason) for s in sessions] == [
            (old, "ended", "reset"),
            (new, "live", None),
        ]
        # Gaps follow the same rule.
        await keeper.gap(
            "audio-en",
            generation["audio-en"],
            Gap(epoch=0, first_seq=9, last_seq=9, start_ms=6000, end_ms=7000, reason="expired"),
        )
        [audio_new] = [x for x in await store.index.renditions(new) if x.name == "audio-en"]
        assert [g.first_seq for g in await store.index.rendition_gaps(audio_new.id)] == [9]
    finally:
        await store.close()


async def test_renditions_that_arrive_together_open_one_session_and_end_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Renditions commit and see a reset at the same moment while the keeper waits on
    the index (as every call waits on PostgreSQL): still one session, one new generation."""
    data = tmp_path / "data"
    data.mkdir()
    store = Store(data, index=await open_index(data / INDEX_FILE))
    index = store.index
    stream = daemon_config(tmp_path, "http://origin.invalid/master.m3u8").streams[0]
    await index.ensure_stream(stream.id, stream.url, 0)

    def round_trip(call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def waits(*args: Any, **kwargs: Any) -> Any:
            await asyncio.sleep(0)  # the other renditions run meanwhile, on either engine
            return await call(*args, **kwargs)

        return waits

    for name in ("open_session", "end_session"):
        monkeypatch.setattr(index, name, round_trip(getattr(index, name)))
    keeper = SessionKeeper(stream, store, lambda: 1_000_000.0)
    targets = [
        RenditionTarget(name=name, uri=f"http://o/{name}.m3u8", kind=kind, main=kind == "video")
        for name, kind in (("360p", "video"), ("audio-en", "audio"), ("subs-en", "subtitles"))
    ]

    async def rows(generation: int, start_ms: int) -> set[str]:
        """The sessions the renditions' rows belong to, all asked for at once."""
        made = await asyncio.gather(
            *(
                keeper.rendition_row(t, generation=generation, clock="origin", start_ms=start_ms)
                for t in targets
            )
        )
        return {row.session_id for row in made}

    try:
        [old] = await rows(0, 0)
        generations = await asyncio.gather(*(keeper.reset(t.name, 0, "reset") for t in targets))
        assert generations == [1, 1, 1], "the first to see the reset moves on; the rest catch up"
        [new] = await rows(1, 5000)
        sessions = await index.sessions_in_opening_order(stream.id)
        assert [(s.id, s.state, s.end_reason) for s in sessions] == [
            (old, "ended", "reset"),
            (new, "live", None),
        ]
    finally:
        await store.close()
