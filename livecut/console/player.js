// The player: hls.js over the daemon's DVR and VOD playlists, and the wall clock of the
// picture on screen, taken from each segment's EXT-X-PROGRAM-DATE-TIME (never the page's clock).

const DEFAULT_FRAME_S = 0.04; // until frames have been seen: 25 fps
const VOD_AROUND_MS = 30 * 60 * 1000; // a seek before the DVR window plays this much around it
const RENEW_EVERY_MS = 5 * 60 * 1000; // signatures last an hour; renewed past half of it

export class Player extends EventTarget {
  constructor(video, api) {
    super();
    this.video = video;
    this.api = api;
    this.hls = null;
    this.streamId = null;
    this.mode = "live"; // "live": the DVR playlist; "vod": a range before its window
    this.segments = []; // [{pdt, start, end}] of buffered fragments: media time -> wall clock
    this.frameS = DEFAULT_FRAME_S;
    this.frameDeltas = [];
    this.lastFrame = null; // {mediaTime, presentedFrames} from requestVideoFrameCallback
    this.dvrS = 3600;
    this._watchFrames();
    // Keep the stream's signature fresh while it plays (api.playback asks the daemon only
    // once half of its life is gone), so no request ever goes out with an expired one.
    setInterval(() => {
      if (this.streamId) this.api.playback(this.streamId).catch(() => {});
    }, RENEW_EVERY_MS);
  }

  get available() {
    return typeof window.Hls !== "undefined" && window.Hls.isSupported();
  }

  async open(streamId, { dvrS }) {
    this.streamId = streamId;
    this.dvrS = dvrS;
    await this._load("live");
  }

  async _load(mode, range = null, startAtWall = null) {
    const signed = await this.api.playback(this.streamId);
    const base = `v1/streams/${encodeURIComponent(this.streamId)}/`;
    const url =
      mode === "live"
        ? `${base}live.m3u8?dvr_s=${this.dvrS}&${signed.query}`
        : `${base}vod.m3u8?from_ms=${range[0]}&to_ms=${range[1]}&${signed.query}`;
    this.destroy();
    this.mode = mode;
    this.segments = [];
    const Hls = window.Hls;
    const hls = new Hls({
      enableWorker: true,
      backBufferLength: 120,
      // Every request carries the stream's newest signature (they are renewed hourly).
      xhrSetup: (xhr, requestUrl) => {
        xhr.open("GET", this.api.sign(requestUrl, this.streamId), true);
      },
    });
    this.hls = hls;
    hls.on(Hls.Events.FRAG_BUFFERED, (_event, data) => this._remember(data.frag));
    hls.on(Hls.Events.LEVEL_UPDATED, (_event, data) => {
      this.dispatchEvent(new CustomEvent("playlist", { detail: data.details }));
    });
    hls.on(Hls.Events.ERROR, (_event, data) => this._error(data));
    if (startAtWall !== null) {
      hls.once(Hls.Events.LEVEL_LOADED, (_event, data) => {
        const position = this._mediaTimeIn(data.details.fragments, startAtWall);
        if (position !== null) this.video.currentTime = position;
      });
    }
    hls.loadSource(url);
    hls.attachMedia(this.video);
    this.dispatchEvent(new CustomEvent("mode", { detail: mode }));
  }

  destroy() {
    if (this.hls) this.hls.destroy();
    this.hls = null;
  }

  _error(data) {
    this.dispatchEvent(new CustomEvent("hlserror", { detail: data }));
    if (!data.fatal || !this.hls) return;
    const Hls = window.Hls;
    if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
      this.hls.recoverMediaError();
    } else if (data.type === Hls.ErrorTypes.NETWORK_ERROR) {
      // A segment retention removed, a signature that expired, a daemon restarting:
      // reload the playlist from where the picture is.
      const wall = this.wallClock();
      setTimeout(() => this._reload(wall), 2000);
    }
  }

  async _reload(wall) {
    if (this.mode === "live") await this._load("live", null, wall);
    else await this.seekWall(wall ?? Date.now());
  }

  _remember(frag) {
    if (frag.programDateTime === null || frag.programDateTime === undefined) return;
    const video = frag.elementaryStreams && frag.elementaryStreams.video;
    // The segment's PDT names its first picture: the video's own start, not the audio's.
    const start = video && Number.isFinite(video.startPTS) ? video.startPTS : frag.start;
    const end = video && Number.isFinite(video.endPTS) ? video.endPTS : frag.start + frag.duration;
    this.segments = this.segments.filter((s) => s.end <= start || s.start >= end);
    this.segments.push({ pdt: frag.programDateTime, start, end });
    this.segments.sort((a, b) => a.start - b.start);
    if (this.segments.length > 2000) this.segments.splice(0, this.segments.length - 2000);
  }

  _watchFrames() {
    const video = this.video;
    if (!("requestVideoFrameCallback" in HTMLVideoElement.prototype)) return;
    const onFrame = (_now, meta) => {
      const last = this.lastFrame;
      if (last && meta.presentedFrames === last.presentedFrames + 1) {
        const delta = meta.mediaTime - last.mediaTime;
        if (delta > 0.005 && delta < 0.2) {
          this.frameDeltas.push(delta);
          if (this.frameDeltas.length > 50) this.frameDeltas.shift();
          const sorted = [...this.frameDeltas].sort((a, b) => a - b);
          this.frameS = sorted[Math.floor(sorted.length / 2)];
        }
      }
      this.lastFrame = { mediaTime: meta.mediaTime, presentedFrames: meta.presentedFrames };
      this.dispatchEvent(new CustomEvent("frame"));
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  }

  /** The buffered segment holding media time t, or null. */
  _segmentAt(t) {
    let found = null;
    for (const segment of this.segments) {
      if (segment.start <= t + 1e-6) found = segment;
      else break;
    }
    return found && t < found.end + 1 ? found : null;
  }

  /** Media time of the start of the picture shown at media time t. */
  frameStart(t = this.video.currentTime) {
    const segment = this._segmentAt(t);
    const origin = segment ? segment.start : 0;
    return origin + Math.floor((t - origin) / this.frameS + 1e-3) * this.frameS;
  }

  /** Wall clock (Unix ms) at media time t, from the PDT of the segment holding it. */
  wallAt(t) {
    const segment = this._segmentAt(t);
    return segment ? segment.pdt + (t - segment.start) * 1000 : null;
  }

  /** Wall clock of the start of the picture on screen. */
  wallClock() {
    return this.wallAt(this.frameStart());
  }

  frameMs() {
    return this.frameS * 1000;
  }

  _mediaTimeIn(fragments, wallMs) {
    for (const frag of fragments) {
      if (frag.programDateTime === null) continue;
      const end = frag.programDateTime + frag.duration * 1000;
      if (wallMs >= frag.programDateTime && wallMs < end) {
        return frag.start + (wallMs - frag.programDateTime) / 1000;
      }
    }
    return null;
  }

  /** Seek to a wall-clock instant: in the DVR window if it is there, else as VOD. */
  async seekWall(wallMs) {
    const details = this.hls && this.hls.latestLevelDetails;
    const segment = this.segments.find((s) => wallMs >= s.pdt && wallMs < s.pdt + (s.end - s.start) * 1000);
    if (segment) {
      this.video.currentTime = segment.start + (wallMs - segment.pdt) / 1000 + this.frameS / 2;
      return;
    }
    if (details) {
      const position = this._mediaTimeIn(details.fragments, wallMs);
      if (position !== null) {
        this.video.currentTime = position;
        return;
      }
    }
    const range = [Math.round(wallMs - VOD_AROUND_MS / 2), Math.round(wallMs + VOD_AROUND_MS / 2)];
    range[1] = Math.min(range[1], Date.now() + 1000);
    await this._load("vod", range, wallMs);
  }

  async goLive() {
    if (this.mode !== "live") await this._load("live");
    else if (this.hls && Number.isFinite(this.hls.liveSyncPosition)) {
      this.video.currentTime = this.hls.liveSyncPosition;
    }
    this.video.play().catch(() => {});
  }

  /** One picture forward (+1) or back (-1), paused: lands in the middle of that picture. */
  step(frames) {
    this.video.pause();
    const start = this.frameStart();
    this.video.currentTime = Math.max(0, start + frames * this.frameS + this.frameS / 2);
  }

  seekBy(seconds) {
    this.video.currentTime = Math.max(0, this.video.currentTime + seconds);
  }

  toggle() {
    if (this.video.paused) this.video.play().catch(() => {});
    else this.video.pause();
  }

  isLive() {
    if (this.mode !== "live" || !this.hls) return false;
    const sync = this.hls.liveSyncPosition;
    return Number.isFinite(sync) && this.video.currentTime >= sync - 2;
  }
}
