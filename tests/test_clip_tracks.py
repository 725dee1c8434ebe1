"""Clips of multi-rendition recordings: alternate audio muxed in, subtitles trimmed and re-timed."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import av

from livecut.origin import LiveOrigin
from tests.harness import daemon_config, running, session_ended, until
from tests.test_clips import AAC_FRAME_S, beep_offsets, check_frames, clip_of, file_of

FRAME_MS = 40


async def test_alternate_audio_and_subtitles(data_dir: Path) -> None:
    origin = LiveOrigin(
        segment_ms=2000,
        window=6,
        prefill=5,
        end_after=5,
        variants=[(320, 180), (288, 162)],
        alternate_audio=["en"],
        subtitles=["en"],
        clock=lambda: time.time(),
    )
    url = await origin.start()
    config = daemon_config(data_dir, url)
    config = replace(config, streams=(replace(config.streams[0], renditions="best"),))
    try:
        async with running(config) as daemon:
            await until(daemon, "cam", lambda: session_ended(daemon), timeout_s=30)
            session = (await daemon.store.index.sessions("cam"))[0]
            kinds = sorted(r.kind for r in await daemon.store.index.renditions(session.id))
            assert kinds == ["audio", "subtitles", "video"]
            start = origin.segment_pdt_ms(1) + 1210
            end = origin.segment_pdt_ms(4) + 130
            clip = await clip_of(daemon, {"start_ms": start, "end_ms": end})
            first = (start - origin.epoch_ms) // FRAME_MS
            last = (end - 1 - origin.epoch_ms) // FRAME_MS
            mp4 = file_of(daemon, clip)
            # The video variant has no audio of its own: the alternate audio is muxed in,
            # in sync (the beep at each whole second lands on that second's frame).
            check_frames(mp4, first, last)
            pairs = beep_offsets(mp4)
            assert len(pairs) >= 4
            assert all(abs(b - v) <= AAC_FRAME_S for v, b in pairs), pairs
            # Subtitles: a sidecar WebVTT timed from the first frame.
            assert clip.result is not None
            vtt = file_of(daemon, clip, "clip.vtt").read_text()
            stamps = re.findall(r"(\d\d):(\d\d):(\d\d)\.(\d{3}) --> ", vtt)
            texts = re.findall(r"en second (\d+)", vtt)
            assert stamps and len(texts) == len(stamps)
            zero = origin.epoch_ms + first * FRAME_MS
            for (h, m, s, ms), second in zip(stamps, texts, strict=True):
                at = ((int(h) * 60 + int(m)) * 60 + int(s)) * 1000 + int(ms)
                expected = max(0, origin.epoch_ms + int(second) * 1000 - zero)
                assert abs(at - expected) <= 1, (at, expected, second)
            # ...and a mov_text track inside the MP4 with the same cues.
            with av.open(str(mp4)) as container:
                types = [s.type for s in container.streams]
                assert types == ["video", "audio", "subtitle"]
                text = container.streams.subtitles[0]
                assert text.codec_context.name == "mov_text"
                payloads = [bytes(p) for p in container.demux(text) if p.size]
            shown = [p[2:].decode() for p in payloads if len(p) > 2]
            assert [int(re.findall(r"second (\d+)", t)[0]) for t in shown] == [
                int(t) for t in texts
            ]
            tracks = clip.result["tracks"]
            assert {
                "kind": "subtitles",
                "codec": "mov_text",
                "language": "en",
                "cues": len(texts),
            } in tracks  # type: ignore[operator]
    finally:
        await origin.stop()
