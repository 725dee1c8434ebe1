// The timeline under the player: recorded ranges, gaps, shots, the loudness envelope,
// in and out, the playhead and the live edge; storyboard pictures on hover.

import { localTime, utcTime } from "./time.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 1000; // viewBox width; the SVG stretches to the element
const H = 100;
const LUFS_FLOOR = -60;
const TILE_WIDTH = 160;
const STORYBOARD_MAX_TILES = 100;
const STORYBOARD_FRESH_MS = 60_000;

export class Timeline extends EventTarget {
  constructor({ root, svg, axis, hover, tile, time }, api) {
    super();
    Object.assign(this, { root, svg, axis, hover, tile, time, api });
    this.streamId = null;
    this.view = [0, 1];
    this.data = { ranges: [], gaps: [], shots: [], loudness: [] };
    this.marks = { in: null, out: null };
    this.playhead = null;
    this.edge = null;
    this.storyboard = null; // {key, from, interval, cues, image, at}
    this.svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
    this._listen();
  }

  setStream(streamId) {
    this.streamId = streamId;
    this.storyboard = null;
  }

  setView(fromMs, toMs) {
    this.view = [fromMs, Math.max(toMs, fromMs + 1000)];
    this.root.setAttribute("aria-valuemin", String(Math.round(this.view[0])));
    this.root.setAttribute("aria-valuemax", String(Math.round(this.view[1])));
    this.render();
  }

  setData(data) {
    this.data = { ranges: [], gaps: [], shots: [], loudness: [], ...data };
    this.render();
  }

  setMarks(inMs, outMs) {
    this.marks = { in: inMs, out: outMs };
    this.render();
  }

  setPlayhead(ms, edgeMs) {
    this.playhead = ms;
    this.edge = edgeMs;
    if (ms !== null) {
      this.root.setAttribute("aria-valuenow", String(Math.round(ms)));
      this.root.setAttribute("aria-valuetext", `${localTime(ms)}, ${utcTime(ms)}`);
    }
    this.render();
  }

  x(ms) {
    const [from, to] = this.view;
    return ((ms - from) / (to - from)) * W;
  }

  msAt(clientX) {
    const box = this.root.getBoundingClientRect();
    const share = Math.min(1, Math.max(0, (clientX - box.left) / box.width));
    return this.view[0] + share * (this.view[1] - this.view[0]);
  }

  render() {
    const [from, to] = this.view;
    const parts = [];
    const rect = (a, b, cls, y = 0, h = H) => {
      const x0 = Math.max(0, this.x(a));
      const x1 = Math.min(W, this.x(b));
      if (x1 > x0) parts.push(`<rect class="${cls}" x="${x0}" y="${y}" width="${x1 - x0}" height="${h}"/>`);
    };
    for (const r of this.data.ranges) rect(r.start_ms, r.end_ms, "rec", 70, 30);
    for (const g of this.data.gaps) rect(g.start_ms, Math.max(g.end_ms, g.start_ms + (to - from) / W), "gap", 0, H);
    if (this.marks.in !== null && this.marks.out !== null) rect(this.marks.in, this.marks.out, "sel");
    const loud = this.data.loudness.filter((b) => b.short_term_lufs !== null || b.momentary_lufs !== null);
    if (loud.length) {
      const level = (b) => {
        const lufs = Math.max(LUFS_FLOOR, b.short_term_lufs ?? b.momentary_lufs ?? LUFS_FLOOR);
        return 68 - ((lufs - LUFS_FLOOR) / -LUFS_FLOOR) * 64;
      };
      const points = loud.map((b) => `${this.x(b.start_ms).toFixed(1)},${level(b).toFixed(1)}`);
      parts.push(`<polyline class="loud" points="${points.join(" ")}"/>`);
    }
    for (const s of this.data.shots) {
      const x = this.x(s.at_ms);
      if (x >= 0 && x <= W) parts.push(`<line class="shot" x1="${x}" x2="${x}" y1="55" y2="100"/>`);
    }
    for (const [ms, cls] of [[this.marks.in, "in"], [this.marks.out, "out"], [this.edge, "edge"], [this.playhead, "head"]]) {
      if (ms === null || ms === undefined) continue;
      const x = this.x(ms);
      if (x >= 0 && x <= W) parts.push(`<line class="${cls}" x1="${x}" x2="${x}" y1="0" y2="${H}"/>`);
    }
    this.svg.innerHTML = parts.join("");
    this._axis();
  }

  _axis() {
    const [from, to] = this.view;
    const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600].map((s) => s * 1000);
    const step = steps.find((s) => (to - from) / s <= 6) || 43_200_000;
    this.axis.replaceChildren();
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      const span = document.createElement("span");
      span.textContent = localTime(t).slice(0, step < 60000 ? 8 : 5);
      span.style.left = `${(((t - from) / (to - from)) * 100).toFixed(2)}%`;
      this.axis.append(span);
    }
  }

  _listen() {
    this.root.addEventListener("click", (event) => {
      this.dispatchEvent(new CustomEvent("seek", { detail: this.msAt(event.clientX) }));
    });
    this.root.addEventListener("mousemove", (event) => this._hover(event.clientX));
    this.root.addEventListener("mouseleave", () => {
      this.hover.hidden = true;
    });
    this.root.addEventListener("keydown", (event) => {
      if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
      event.preventDefault();
      const step = (event.shiftKey ? 60 : 5) * 1000 * (event.key === "ArrowLeft" ? -1 : 1);
      const from = this.playhead ?? this.view[1];
      this.dispatchEvent(new CustomEvent("seek", { detail: from + step }));
    });
  }

  async _hover(clientX) {
    const ms = this.msAt(clientX);
    const box = this.root.getBoundingClientRect();
    this.hover.hidden = false;
    const left = Math.min(Math.max(0, clientX - box.left - TILE_WIDTH / 2), box.width - TILE_WIDTH);
    this.hover.style.left = `${left}px`;
    this.time.textContent = `${localTime(ms)} · ${utcTime(ms)}`;
    const board = await this._storyboard();
    const cue = board && board.cues.find((c) => ms >= board.from + c.start && ms < board.from + c.end);
    if (!cue) {
      this.tile.hidden = true;
      return;
    }
    this.tile.hidden = false;
    this.tile.style.backgroundImage = `url("${board.image}")`;
    this.tile.style.backgroundPosition = `-${cue.x}px -${cue.y}px`;
    this.tile.style.width = `${cue.w}px`;
    this.tile.style.height = `${cue.h}px`;
  }

  /** The storyboard of the view (sheet and cues), fetched on first hover and kept a minute. */
  async _storyboard() {
    if (!this.streamId) return null;
    const [from, to] = this.view;
    const interval = Math.max(1000, Math.ceil((to - from) / STORYBOARD_MAX_TILES / 1000) * 1000);
    const start = Math.floor(from / interval) * interval;
    const tiles = Math.min(STORYBOARD_MAX_TILES, Math.ceil((to - start) / interval));
    const end = start + tiles * interval;
    const key = `${this.streamId}:${start}:${end}:${interval}`;
    const board = this.storyboard;
    if (board && board.key === key && Date.now() - board.at < STORYBOARD_FRESH_MS) return board.ready;
    if (board) board.ready.then((old) => old && URL.revokeObjectURL(old.image));
    const ready = this._loadStoryboard(start, end, interval);
    this.storyboard = { key, at: Date.now(), ready };
    return ready;
  }

  async _loadStoryboard(from, to, interval) {
    try {
      const query = new URLSearchParams({ from_ms: from, to_ms: to, interval_ms: interval, width: TILE_WIDTH });
      const vtt = await this.api.text(`v1/streams/${encodeURIComponent(this.streamId)}/storyboard.vtt?${query}`);
      const cues = [];
      let sheet = null;
      const stamp = (text) => {
        const [h, m, s] = text.split(":");
        return (Number(h) * 3600 + Number(m) * 60 + Number(s)) * 1000;
      };
      const lines = vtt.split(/\r?\n/);
      for (let n = 0; n < lines.length; n++) {
        const times = /^(\S+) --> (\S+)/.exec(lines[n]);
        const target = times && /^(.*)#xywh=(\d+),(\d+),(\d+),(\d+)$/.exec(lines[n + 1] || "");
        if (!target) continue;
        sheet = target[1];
        cues.push({
          start: stamp(times[1]),
          end: stamp(times[2]),
          x: Number(target[2]),
          y: Number(target[3]),
          w: Number(target[4]),
          h: Number(target[5]),
        });
      }
      if (!sheet) return null;
      const url = new URL(sheet, location.href);
      const image = await this.api.objectUrl(url.pathname + url.search);
      return { from, cues, image };
    } catch {
      return null; // nothing recorded there, or no pictures yet: no tiles, the time still shows
    }
  }
}
