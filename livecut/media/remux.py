"""Copy the packets a clip plan selects into one MP4, frame-accurate, without re-encoding.

Each continuous run of segments is opened once, as one byte stream (media/concat.py),
and its packets are chosen by their own timestamps: a packet is copied exactly once,
whatever the wall-clock spans of the segments around it say. The first presented frame
is placed at t=0. Decoding starts at the keyframe before it: those pre-roll frames get
negative timestamps, and libavformat writes an edit list that hides them. After the
last presented frame, reference frames that B-frames before it need are kept too and
hidden by shortening the edit list (media/mp4edit.py). Audio keeps its own timestamps
relative to the video, so the A/V offset of the source is the clip's to the tick.

Everything streams: the first GOP is held until the first presented frame is known,
the reference frames after the end until it is known whether a shown frame needs them,
and nothing else; memory does not grow with the clip's length (but for the MP4 muxer's
sample tables).

With reencode_edges, for consumers that ignore edit lists, the first partial GOP is
re-encoded instead (media/edges.py): the file's first video sample is then the first
presented frame, and copying resumes at the source's next IDR.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
from av.audio.stream import AudioStream
from av.bitstream import BitStreamFilterContext
from av.container import InputContainer, OutputContainer
from av.packet import Packet
from av.stream import Stream
from av.video.stream import VideoStream

from livecut.media.boxes import BoxError
from livecut.media.clock import TS_WRAP_S
from livecut.media.concat import open_run
from livecut.media.edges import EdgeEncoder, EdgeError
from livecut.media.mp4edit import (
    Finished,
    FragmentTables,
    Mp4EditError,
    finish_appended,
    finish_mp4,
)
from livecut.media.mp4out import MuxerOutput
from livecut.media.subtitles import Cue, MovTextTrack
from livecut.media.verify import VerifyError, verify_mp4

# Timestamps of frames that should coincide can differ by PDT rounding (1 ms) and
# ms-rounded keyframe times: this much is "the same instant".
SAME_S = 0.002
# The frame covering an instant: presented at or before it, within half a millisecond.
COVER_S = 0.0005


# Muxed as fragmented MP4 so the muxer's memory stays flat however long the clip; the
# moov is written at the first fragment (delay_moov), once the pre-roll it hides is known.
# media/mp4edit.py turns the result into a progressive MP4.
FRAGMENTED = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof+delay_moov",
    "frag_duration": "2000000",
}


_BUFFER = 1 << 20  # libavformat's write buffer: large writes keep Python out of the loop
# The finished file's index: a few hundred bytes a track, about 4 bytes a sample (its
# size), up to 8 more per sample with B-frames (composition offsets), 8 a fragment.
_INDEX_BYTES_PER_S = 13 * (60 + 48)  # bytes/sample x (60 fps video + 48 kHz AAC frames)
_INDEX_FIXED_BYTES = 16 * 1024


def header_room(expected_s: float) -> int:
    """Bytes to leave in front of the muxer's output for the finished file's ftyp and
    moov, so the media need not be copied to put the index first (media/mp4edit.py).
    Too little only costs a copy."""
    return _INDEX_FIXED_BYTES + math.ceil(max(expected_s, 0.0) * 1.25 * _INDEX_BYTES_PER_S)


class RemuxError(RuntimeError):
    """The stored media could not be turned into a clip."""


@dataclass(frozen=True, kw_only=True, slots=True)
class RemuxRun:
    """One continuous run of stored segments and the media time to copy of it."""

    paths: tuple[Path, ...]
    init_path: Path | None
    wraps: bool  # MPEG-TS timestamps (33-bit, wrapping)
    ref_s: float  # media time of the run's first segment: unwrapping is relative to it
    from_s: float  # start at the first keyframe at or after this media time
    to_s: float | None  # present nothing at or after this media time (None: the run's end)
    wall_ms: Callable[[float], float]  # media time -> wall time (by the local PDT)
    # An earlier segment whose parameter sets (SPS/PPS) this run's video lacks, if any.
    parameters: Path | None = None


@dataclass(frozen=True, kw_only=True, slots=True)
class TrackInfo:
    kind: str
    codec: str
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    frames: int = 0  # presented frames (video) or packets (audio)
    first_ms: float | None = None  # wall time of the first presented frame / audio sample
    end_ms: float | None = None  # wall time where presentation ends

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {}
        for key in self.__slots__:
            value = getattr(self, key)
            if value is not None:
                body[key] = round(value) if key in ("first_ms", "end_ms") else value
        return body


@dataclass(frozen=True, kw_only=True, slots=True)
class Presented:
    """What the MP4 shows: the wall-clock span of its first and last frames."""

    start_ms: float  # wall time of the first presented frame (t=0 in the file)
    end_ms: float  # wall time where the last presented frame ends
    duration_s: float  # length of the presentation in the file (media time)
    tracks: tuple[TrackInfo, ...]
    size: int
    sha256: str
    reencoded_frames: int = 0  # frames of the first partial GOP re-encoded (reencode_edges)


@dataclass(kw_only=True, slots=True)
class _Track:
    """Output-side state for one kind of stream (one video, one audio)."""

    out: Stream
    kind: str
    codec: str
    width: int | None
    height: int | None
    fps: float | None
    sample_rate: int | None
    channels: int | None
    frame_s: float  # fallback duration for packets that carry none (TS video)
    last_dts: int | None = None
    frames: int = 0  # presented frames / audio packets
    samples: int = 0  # everything muxed, pre-roll and trailing references included


@dataclass(slots=True)
class _Item:
    """A demuxed packet with its media time, unwrapped onto its run's clock."""

    kind: str
    packet: Packet[Any]
    time_base: Fraction  # the stream's (one object per stream: cheap to hash)
    t: float  # presentation time, seconds
    dts_t: float  # decode time, seconds
    pts: int  # unwrapped ticks
    dts: int
    duration_s: float


@dataclass(kw_only=True, slots=True)
class _Placement:
    """How a run's media time maps into the file (out = t - shift_s), and where it ends."""

    shift_s: float
    end_s: float | None = None  # frames presented from here on are not shown
    shift_ticks: dict[str, int] = field(default_factory=dict)  # by kind: one time base each

    def shows(self, t: float) -> bool:
        return self.end_s is None or t < self.end_s - COVER_S

    def ticks(self, kind: str, time_base: Fraction) -> int:
        shift = self.shift_ticks.get(kind)
        if shift is None:
            shift = self.shift_ticks[kind] = round(Fraction(self.shift_s) / time_base)
        return shift


def remux_mp4(
    runs: Sequence[RemuxRun],
    *,
    first_s: float,
    output: Path,
    audio_runs: Sequence[RemuxRun] = (),
    reencode_edges: bool = False,
    cues: Sequence[Cue] = (),
    cue_language: str | None = None,
    expected_s: float = 60.0,
    faststart: bool = False,
) -> Presented:
    """Write the frames from the one covering first_s (media time of runs[0]) to the one
    covering 1 ms before runs[-1].to_s into `output`; blocking, run it in a thread.

    `audio_runs` are runs of an alternate-audio rendition, muxed beside video that has
    no audio of its own, placed by wall time. `cues` (wall-timed subtitles, already
    trimmed to the clip) become a mov_text track. `expected_s`, about how long the clip
    is, sizes the room left for the index in front of the media (header_room) when
    `faststart` asks for the index first. Otherwise the index goes last, as most muxers
    write it, and the file's SHA-256 is taken while it is written (media/mp4out.py).
    """
    if not runs:
        raise RemuxError("nothing to remux")
    tmp = output.with_name(output.name + ".part")
    copy = _Copy(runs, first_s=first_s, reencode_edges=reencode_edges)
    copy.cues, copy.cue_language = cues, cue_language
    room = header_room(expected_s) if faststart else 0
    tables = None if faststart else FragmentTables()
    try:
        with open(tmp, "w+b") as raw:
            sink = MuxerOutput(raw, offset=room, on_box=None if tables is None else tables.add)
            with (
                sink,
                av.open(
                    sink, mode="w", format="mp4", options=FRAGMENTED, buffer_size=_BUFFER
                ) as out,
            ):
                copy.write(out, _AlternateAudio(audio_runs))
        video = copy.tracks.get("video")
        durations = [copy.end_out_s] * copy.track_count
        check = functools.partial(
            verify_mp4,
            video_frames=None if video is None else video.frames,
            length_s=copy.end_out_s,
            audio_span_s=copy.audio_span_s(),
        )
        scanned = sink.scanned
        if tables is not None and scanned is not None:
            finished = finish_appended(
                tmp,
                output,
                durations,
                tables=tables,
                written=sink.size,
                freed=scanned.patches,
                digest=scanned.digest,
                check=check,
            )
        else:  # the index first, or a muxer that sought back: the file is read again
            finished = finish_mp4(tmp, output, durations, start=room, check=check)
    except (av.error.FFmpegError, EdgeError, Mp4EditError, BoxError) as exc:
        output.unlink(missing_ok=True)
        raise RemuxError(f"remux failed: {exc}") from exc
    except VerifyError:
        output.unlink(missing_ok=True)  # a corrupt file is never delivered
        raise
    finally:
        tmp.unlink(missing_ok=True)
    return copy.presented(finished)


class _Copy:
    """One clip's copy, run after run: the state that crosses from one run to the next."""

    def __init__(self, runs: Sequence[RemuxRun], *, first_s: float, reencode_edges: bool) -> None:
        self.runs = runs
        self.first_s = first_s
        self.reencode_edges = reencode_edges
        self.cues: Sequence[Cue] = ()
        self.cue_language: str | None = None
        self.tracks: dict[str, _Track] = {}
        self.zero_ms: float | None = None  # wall time of the first presented frame
        self.end_out_s = 0.0  # where the last presented frame ends, in the file
        self.end_ms: float | None = None  # ...and on the wall clock
        self.edge: EdgeEncoder | None = None
        self.text: MovTextTrack | None = None
        self.audio_first_s = math.inf  # the audio muxed, in the file's time
        self.audio_end_s = -math.inf

    @property
    def track_count(self) -> int:
        return len(self.tracks) + (self.text is not None)

    def audio_span_s(self) -> tuple[float, float]:
        """Where the audio copied is presented in the file: within the video's span,
        short of it only where the recording has no audio (a live edge, a session's end)."""
        if self.audio_first_s > self.audio_end_s:
            return (0.0, 0.0)
        return (max(0.0, self.audio_first_s), min(self.end_out_s, self.audio_end_s))

    def presented(self, finished: Finished) -> Presented:
        zero_ms = self.zero_ms or 0.0
        end_ms = self.end_ms if self.end_ms is not None else zero_ms
        audio_first, audio_end = self.audio_span_s()
        # Audio's own span, where the recording had less of it than of the video.
        spans = {
            "audio": (
                zero_ms + audio_first * 1000,
                min(end_ms, zero_ms + audio_end * 1000),
            )
        }
        infos = tuple(
            TrackInfo(
                kind=t.kind,
                codec=t.codec,
                width=t.width,
                height=t.height,
                fps=t.fps,
                sample_rate=t.sample_rate,
                channels=t.channels,
                frames=t.frames,
                first_ms=spans.get(t.kind, (zero_ms, end_ms))[0],
                end_ms=spans.get(t.kind, (zero_ms, end_ms))[1],
            )
            for t in self.tracks.values()
        )
        return Presented(
            start_ms=zero_ms,
            end_ms=end_ms,
            duration_s=self.end_out_s,
            tracks=infos,
            size=finished.size,
            sha256=finished.sha256,
            reencoded_frames=0 if self.edge is None else self.edge.frames,
        )

    def write(self, out: OutputContainer, alternate: _AlternateAudio) -> None:
        try:
            for index, run in enumerate(self.runs):
                first = index == 0
                with open_run(run.paths, run.init_path) as src:
                    if first:
                        self.tracks = _add_tracks(
                            out, src, _first_frame_config(run), parameters=run.parameters
                        )
                        if alternate.pending and "audio" not in self.tracks:
                            self.tracks.update(alternate.add_track(out))
                    _RunCopy(self, out, src, run, first=first, alternate=alternate).copy()
            if self.edge is not None and self.edge.active:  # the clip ends before the next IDR
                self.write_edge(out, self.edge.finish(self.end_out_s * 1000), Fraction(0))
            alternate.flush(self, out, until_out_s=None)
        finally:
            alternate.close()
        if not any(t.samples for t in self.tracks.values()):
            raise RemuxError("the selected range holds no packets")
        if self.text is not None:
            self.text.close()

    def begin(
        self,
        out: OutputContainer,
        source: InputContainer,
        run: RemuxRun,
        zero_s: float,
        *,
        keyframe_s: float | None,
        end_s: float | None,
    ) -> None:
        """The first presented frame is known: subtitles and the edge encoder can start."""
        self.zero_ms = run.wall_ms(zero_s)
        if self.cues:
            # Added before anything is muxed, so its time base is fine enough for the others.
            self.text = MovTextTrack(out, language=self.cue_language)
            for cue in self.cues:
                self.text.add(cue, zero_ms=self.zero_ms)
        starts_on_keyframe = keyframe_s is None or abs(keyframe_s - zero_s) <= SAME_S
        if self.reencode_edges and "video" in self.tracks and not starts_on_keyframe:
            # Only the re-encoder needs the decoder's view of the source (pixel format,
            # colour, profile): one segment is opened again, with its decoders set up.
            with open_run(run.paths[:1], run.init_path, decode=True) as template:
                video = next(s for s in template.streams if isinstance(s, VideoStream))
                end_out_ms = math.inf if end_s is None else (end_s - zero_s) * 1000
                self.edge = EdgeEncoder(video, first_ms=0.0, end_ms=end_out_ms)
            out_ctx = self.tracks["video"].out.codec_context
            assert out_ctx is not None
            out_ctx.extradata = self.edge.extradata

    def mux(self, out: OutputContainer, item: _Item, placement: _Placement) -> bool:
        """Mux one packet; True if it is a presented video frame."""
        track = self.tracks[item.kind]
        out_s = item.t - placement.shift_s
        presented = False
        if item.kind == "video":
            presented = out_s >= -COVER_S and placement.shows(item.t)
            if presented:
                self.end_out_s = max(self.end_out_s, out_s + item.duration_s)
            edge = self.edge
            if edge is not None and edge.active:
                if not edge.is_handoff(item.packet, out_s * 1000):
                    edge.decode(item.packet, out_s * 1000)
                    return presented
                reorder = Fraction(item.pts - item.dts) * item.time_base
                self.write_edge(out, edge.finish(out_s * 1000), reorder)
            if presented:
                track.frames += 1
        else:
            if out_s + item.duration_s <= COVER_S:
                return False  # wholly before the first frame
            track.frames += 1
            self.audio_first_s = min(self.audio_first_s, out_s)
            self.audio_end_s = max(self.audio_end_s, out_s + item.duration_s)
        packet = item.packet
        tb = item.time_base
        shift = placement.ticks(item.kind, tb)
        pts, dts = item.pts - shift, item.dts - shift
        if track.last_dts is not None and dts <= track.last_dts:
            # Alternate audio placed by wall time may step back a tick at a join.
            dts = track.last_dts + 1
            pts = max(pts, dts)
        track.last_dts = dts
        track.samples += 1
        packet.pts, packet.dts = pts, dts
        packet.stream = track.out
        packet.time_base = tb
        out.mux(packet)
        return presented

    def write_edge(
        self, out: OutputContainer, packets: list[Packet[Any]], reorder_s: Fraction
    ) -> None:
        """Mux the re-encoded run, its decode times shifted by the copied IDR's reorder delay.

        The run has no B-frames, but the copied stream that follows decodes reorder_s ahead
        of presentation: the same constant shift keeps decode times rising across the join.
        """
        track = self.tracks["video"]
        for packet in packets:
            assert packet.pts is not None
            shift = round(reorder_s / packet.time_base)
            time_base = packet.time_base
            packet.dts = packet.pts - shift
            packet.stream = track.out
            packet.time_base = time_base
            track.last_dts = packet.dts
            track.frames += 1
            track.samples += 1
            out.mux(packet)


class _RunCopy:
    """The packets of one run, chosen by their own timestamps.

    Video starts at the run's first keyframe at or after from_s. In the first run,
    packets are held until the first presented frame is known (decode times only rise
    and nothing is presented before it is decoded, so once a packet decodes after
    first_s every frame presented by then has been seen). In the last run, frames
    presented after the end are held too, and copied only if a frame that is shown is
    decoded after them (they are its references); once a packet decodes after the end,
    no later one can be shown.
    """

    def __init__(
        self,
        clip: _Copy,
        out: OutputContainer,
        source: InputContainer,
        run: RemuxRun,
        *,
        first: bool,
        alternate: _AlternateAudio,
    ) -> None:
        self.clip = clip
        self.out = out
        self.source = source
        self.run = run
        self.first = first
        self.alternate = alternate
        self.has_video = "video" in clip.tracks and any(s.type == "video" for s in source.streams)
        self.end_s = run.to_s
        self.placement: _Placement | None = None
        self.held: list[_Item] = []
        self.tail: list[_Item] = []  # frames after the end, until a shown frame needs them
        self.late_audio: list[_Item] = []  # audio after the end, until the end is known
        self.start_keyframe_s: float | None = None
        self.started = not self.has_video
        self.video_done = False
        self.end_t = -math.inf  # media time where the last shown video frame ends

    def copy(self) -> None:
        for item in _items(self.source, self.run, kinds=tuple(self.clip.tracks)):
            if item.kind == "video" and not self._take_video(item):
                continue
            if self.placement is None and not self._settle(item):
                continue
            if self._finished(item):
                break
        if self.placement is None and self.held:
            self._settle(None)
        self._end_video()
        if self.end_t > -math.inf:
            self.clip.end_ms = self.run.wall_ms(self.end_t)

    def _take_video(self, item: _Item) -> bool:
        if self.video_done:
            return False
        if not self.started:
            if not item.packet.is_keyframe or item.t < self.run.from_s - SAME_S:
                return False
            # Leading pictures of an open GOP (decoded after its keyframe, shown before
            # it) are kept: some are references whose frame_num and memory management
            # the pictures after them count on, so dropping them breaks the stream.
            # They are shown before the clip's first frame, hidden by the edit list.
            self.started = True
            self.start_keyframe_s = item.t
        return True

    def _settle(self, item: _Item | None) -> bool:
        """Fix the run's placement in the file; False while the first frame is unknown."""
        if not self.first:
            assert item is not None
            self.placement = self.clip_placement(item)
            self._put(item)
            return False
        if item is not None:
            self.held.append(item)
        zero = self._zero(final=item is None)
        if zero is None:
            return False
        self.clip.begin(
            self.out,
            self.source,
            self.run,
            zero,
            keyframe_s=self.start_keyframe_s,
            end_s=self.end_s,
        )
        self.placement = _Placement(shift_s=zero, end_s=self.end_s)
        held, self.held = self.held, []
        for one in held:
            self._put(one)
        return False

    def clip_placement(self, item: _Item) -> _Placement:
        """A later run sits where its PDT puts it, but never before what came before it."""
        zero_ms = self.clip.zero_ms or 0.0
        at_s = max(self.clip.end_out_s, (self.run.wall_ms(item.t) - zero_ms) / 1000)
        return _Placement(shift_s=item.t - at_s, end_s=self.end_s)

    def _zero(self, *, final: bool) -> float | None:
        if not self.has_video:
            return max(self.clip.first_s, self.run.from_s)
        video = [i for i in self.held if i.kind == "video"]
        if not video or (not final and video[-1].dts_t <= self.clip.first_s + COVER_S):
            return None
        covering = [i.t for i in video if i.t <= self.clip.first_s + COVER_S]
        return max(covering) if covering else min(i.t for i in video)

    def _finished(self, item: _Item) -> bool:
        """Mux the item (placement known); True when nothing later in the run is needed."""
        self._put(item)
        if self.end_s is None:
            return False
        if self.has_video and not self.video_done:
            return False
        if item.kind == "video" or self.placement is None:
            return False
        # Audio comes in time order: once one packet starts after the end, all do.
        end = self.clip.end_out_s + self.placement.shift_s if self.has_video else self.end_s
        return item.t >= end

    def _put(self, item: _Item) -> None:
        placement = self.placement
        assert placement is not None
        end_s = self.end_s
        if item.kind == "video":
            if self.video_done:
                return
            if end_s is not None:
                if item.dts_t >= end_s - COVER_S:
                    self._end_video()
                    return
                if item.t >= end_s - COVER_S:
                    self.tail.append(item)
                    return
                for reference in self.tail:  # decoded before a shown frame: it needs them
                    self.clip.mux(self.out, reference, placement)
                self.tail.clear()
            if self.clip.mux(self.out, item, placement):
                self.end_t = max(self.end_t, item.t + item.duration_s)
            self.alternate.flush(self.clip, self.out, until_out_s=item.t - placement.shift_s)
            return
        if end_s is not None and item.t >= end_s - COVER_S and self.has_video:
            if self.video_done:
                if item.t - placement.shift_s < self.clip.end_out_s - COVER_S:
                    self.clip.mux(self.out, item, placement)
            else:
                self.late_audio.append(item)
            return
        if end_s is not None and item.t >= end_s - COVER_S:
            return  # audio only: the end is the requested instant
        self.clip.mux(self.out, item, placement)
        if not self.has_video and end_s is not None:
            self.clip.end_out_s = max(
                self.clip.end_out_s, min(item.t + item.duration_s, end_s) - placement.shift_s
            )
            self.clip.end_ms = self.run.wall_ms(min(item.t + item.duration_s, end_s))

    def _end_video(self) -> None:
        """No later frame can be shown: drop the held references, place the held audio."""
        if self.video_done or self.placement is None:
            return
        self.video_done = True
        self.tail.clear()
        late, self.late_audio = self.late_audio, []
        for item in late:
            if item.t - self.placement.shift_s < self.clip.end_out_s - COVER_S:
                self.clip.mux(self.out, item, self.placement)


def _items(source: InputContainer, run: RemuxRun, *, kinds: Sequence[str]) -> Iterator[_Item]:
    """The run's audio and video packets in file order, timed on the run's clock.

    This loop meets every packet of every clip: plain floats and ints only (no Fraction
    arithmetic), each stream's constants looked up once.
    """
    streams: dict[int, tuple[str, float, Fraction, float, BitStreamFilterContext | None]] = {}
    for stream in source.streams:
        if stream.type not in kinds or any(v[0] == stream.type for v in streams.values()):
            continue
        frame_s = 0.0
        if isinstance(stream, VideoStream) and stream.average_rate:
            frame_s = float(1 / stream.average_rate)
        tb = stream.time_base or Fraction(1, 90_000)
        adts: BitStreamFilterContext | None = None
        if isinstance(stream, AudioStream) and stream.codec_context.name == "aac":
            # MP4 holds raw AAC frames, so the ADTS headers TS carries come off (the
            # configuration goes in the sample description); libavcodec's filter does it
            # without a copy of each frame through Python. Raw frames pass unchanged.
            adts = BitStreamFilterContext("aac_adtstoasc", stream)
        streams[stream.index] = (stream.type, frame_s, tb, float(tb), adts)
    wraps, ref = run.wraps, run.ref_s
    half = TS_WRAP_S / 2
    for packet in source.demux():
        known = streams.get(packet.stream_index)
        pts = packet.pts
        if known is None or pts is None:
            continue
        kind, frame_s, tb, tb_s, adts = known
        if adts is not None:
            (packet,) = adts.filter(packet)
        dts = packet.dts
        if dts is None:
            dts = pts
        if wraps:
            # Whole 33-bit periods, in ticks, that bring pts within half a period of ref.
            raw_t = pts * tb_s
            periods = 0
            while raw_t + periods * TS_WRAP_S < ref - half:
                periods += 1
            while raw_t + periods * TS_WRAP_S > ref + half:
                periods -= 1
            if periods:
                step = periods * round(TS_WRAP_S / tb_s)
                pts += step
                dts += step
        duration = packet.duration
        yield _Item(
            kind,
            packet,
            tb,
            pts * tb_s,
            dts * tb_s,
            pts,
            dts,
            duration * tb_s if duration else frame_s,
        )


def _first_frame_config(run: RemuxRun) -> Callable[[AudioStream], bytes | None]:
    """Finds an ADTS stream's configuration in the run's first segment (opened again:
    the run's own demuxer must not be read ahead before the copy begins)."""

    def config_of(stream: AudioStream) -> bytes | None:
        with open_run(run.paths[:1], run.init_path) as source:
            same = source.streams[stream.index]
            return _aac_config(source, same) if isinstance(same, AudioStream) else None

    return config_of


def _adts_header_size(data: bytes) -> int:
    """Bytes of ADTS header on an AAC frame from MPEG-TS (0 if it has none)."""
    if len(data) < 9 or data[0] != 0xFF or data[1] & 0xF6 != 0xF0:
        return 0
    return 7 if data[1] & 1 else 9  # protection_absent: no CRC


def _aac_config(source: InputContainer, stream: AudioStream) -> bytes | None:
    """The AudioSpecificConfig of an ADTS stream, from its first frame's header."""
    for packet in source.demux(stream):
        data = bytes(packet)
        if not _adts_header_size(data):
            return None
        profile = (data[2] >> 6) + 1
        rate_index = (data[2] >> 2) & 0xF
        channels = ((data[2] & 1) << 2) | (data[3] >> 6)
        return bytes(
            [(profile << 3) | (rate_index >> 1), ((rate_index & 1) << 7) | (channels << 3)]
        )
    return None


class _AlternateAudio:
    """Audio from another rendition, pulled alongside the video so the muxer's
    interleaving queue stays short, and placed by wall time."""

    def __init__(self, runs: Sequence[RemuxRun]) -> None:
        self._runs = list(runs)
        self._source: InputContainer | None = None
        self._items: Iterator[_Item] | None = None
        self._run: RemuxRun | None = None
        self._next: _Item | None = None

    @property
    def pending(self) -> bool:
        return bool(self._runs) or self._source is not None

    def add_track(self, out: OutputContainer) -> dict[str, _Track]:
        run = self._runs[0]
        with open_run(run.paths[:1], run.init_path) as probe:
            return _add_tracks(out, probe, _first_frame_config(run), kinds=("audio",))

    def flush(self, clip: _Copy, out: OutputContainer, *, until_out_s: float | None) -> None:
        """Mux the audio presented up to until_out_s (None: up to the clip's end)."""
        if clip.zero_ms is None or "audio" not in clip.tracks:
            return
        while (item := self._peek()) is not None and self._run is not None:
            out_s = (self._run.wall_ms(item.t) - clip.zero_ms) / 1000
            if until_out_s is not None and out_s > until_out_s:
                return
            if until_out_s is None and out_s >= clip.end_out_s - COVER_S:
                return
            self._next = None
            clip.mux(out, item, _Placement(shift_s=item.t - out_s))

    def _peek(self) -> _Item | None:
        while self._next is None:
            if self._items is None:
                if not self._runs:
                    return None
                self.close()
                self._run = self._runs.pop(0)
                self._source = open_run(self._run.paths, self._run.init_path)
                self._items = _items(self._source, self._run, kinds=("audio",))
            self._next = next(self._items, None)
            if self._next is None:
                self._items = None
        return self._next

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
            self._source = None


def _add_tracks(
    out: OutputContainer,
    source: InputContainer,
    config_of: Callable[[AudioStream], bytes | None],
    *,
    kinds: Sequence[str] = ("video", "audio"),
    parameters: Path | None = None,
) -> dict[str, _Track]:
    """Output tracks like the source's first video and audio streams; `config_of` finds
    the AAC configuration of audio that carries it in band (ADTS, from MPEG-TS), and
    video without parameter sets of its own takes them from the `parameters` segment."""
    tracks: dict[str, _Track] = {}
    for stream in source.streams:
        if stream.type in tracks or stream.type not in kinds:
            continue
        if isinstance(stream, VideoStream):
            ctx = stream.codec_context
            rate = stream.average_rate
            template: VideoStream = stream
            if not (ctx.width and ctx.height) and parameters is not None:
                with open_run((parameters,), None) as earlier:
                    template = earlier.streams.video[0]
                    added = out.add_stream_from_template(template)
                ctx = template.codec_context
            else:
                added = out.add_stream_from_template(stream)
            if not (ctx.width and ctx.height):
                raise RemuxError(
                    "the video's parameter sets (its size) are in no segment still recorded"
                )
            tracks["video"] = _Track(
                out=added,
                kind="video",
                codec=ctx.name,
                width=ctx.width,
                height=ctx.height,
                fps=None if not rate else round(float(rate), 3),
                sample_rate=None,
                channels=None,
                frame_s=float(1 / rate) if rate else 0.0,
            )
        elif isinstance(stream, AudioStream):
            actx = stream.codec_context
            sound = out.add_stream_from_template(stream)
            if actx.name == "aac" and not actx.extradata:
                config = config_of(stream)
                if config is not None and sound.codec_context is not None:
                    sound.codec_context.extradata = config
            tracks["audio"] = _Track(
                out=sound,
                kind="audio",
                codec=actx.name,
                width=None,
                height=None,
                fps=None,
                sample_rate=actx.sample_rate,
                channels=actx.channels,
                frame_s=0.0,
            )
    if not tracks:
        raise RemuxError("the first segment has no audio or video stream")
    return tracks
