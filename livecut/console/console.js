// The console: pick a stream, watch and rewind it, mark in and out, make the clip.

import { Api, AuthError } from "./api.js";
import { ClipList } from "./clips.js";
import { Player } from "./player.js";
import { duration, localDateTime, localTime, parseTime, utcDateTime, utcTime, zoneName } from "./time.js";
import { Timeline } from "./timeline.js";

const $ = (id) => document.getElementById(id);
const TIMELINE_REFRESH_MS = 5000;
const LOUDNESS_MAX_SPAN_MS = 30 * 60 * 1000;
const LOUDNESS_REFRESH_MS = 30000;
const DVR_MAX_S = 3600;
const INSTALL_HLSJS = "npm install --no-audit --no-fund --prefix .cache/npm hls.js@1";

const api = new Api();
const state = {
  streams: [],
  streamId: null,
  inMs: null, // wall clock of the first picture of the clip
  outMs: null, // wall clock just after its last picture
  frameMs: 40,
  spanMs: 300000,
  following: true, // the timeline's view follows the live edge
  timelineAt: 0,
  loudness: { at: 0, key: "", buckets: [] },
};

const player = new Player($("player"), api);
const timeline = new Timeline(
  {
    root: $("timeline"),
    svg: $("timeline-svg"),
    axis: $("timeline-axis"),
    hover: $("hover"),
    tile: $("hover-tile"),
    time: $("hover-time"),
  },
  api,
);
const clips = new ClipList(
  { list: $("clips"), empty: $("no-clips"), status: $("events-state"), template: $("clip-item") },
  api,
);

function notice(text) {
  $("notice").textContent = text;
  $("notice").hidden = !text;
}

// key and start-up -----------------------------------------------------------------------
async function start() {
  $("zone-name").textContent = zoneName();
  try {
    const body = await api.request("v1/streams");
    state.streams = body.streams;
  } catch (error) {
    if (error instanceof AuthError) return askForKey(api.key ? "That key was refused." : "");
    return notice(`The daemon did not answer: ${error.message}`);
  }
  $("key-form").hidden = true;
  $("forget-key").hidden = !api.key;
  $("app").hidden = false;
  const select = $("stream");
  select.replaceChildren(
    ...state.streams.map((s) => {
      const option = document.createElement("option");
      option.value = s.id;
      option.textContent = s.id;
      return option;
    }),
  );
  if (!state.streams.length) return notice("No stream is configured: add one under [[streams]].");
  if (!player.available) {
    notice(
      typeof window.Hls === "undefined"
        ? `The player library is not installed. On the machine running livecut, in the directory it starts from: ${INSTALL_HLSJS}`
        : "This browser cannot play HLS through MediaSource.",
    );
  }
  const wanted = new URLSearchParams(location.hash.slice(1)).get("stream");
  await pickStream(state.streams.some((s) => s.id === wanted) ? wanted : state.streams[0].id);
}

function askForKey(message) {
  $("app").hidden = true;
  $("key-form").hidden = false;
  $("key-error").textContent = message;
  $("key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  api.setKey($("key").value.trim());
  $("key").value = "";
  start();
});

$("forget-key").addEventListener("click", () => {
  api.setKey("");
  clips.close();
  player.destroy();
  askForKey("");
});

// streams ----------------------------------------------------------------------------------
async function pickStream(streamId) {
  state.streamId = streamId;
  $("stream").value = streamId;
  history.replaceState(null, "", `#stream=${encodeURIComponent(streamId)}`);
  const stream = state.streams.find((s) => s.id === streamId);
  $("stream-state").textContent = stream ? `${stream.state}` : "";
  setMarks(null, null);
  timeline.setStream(streamId);
  state.following = true;
  state.timelineAt = 0;
  state.loudness = { at: 0, key: "", buckets: [] };
  const edge = stream && stream.live_edge_ms ? stream.live_edge_ms : Date.now();
  timeline.setView(edge - state.spanMs, edge);
  try {
    await api.playback(streamId);
    await clips.follow(streamId);
    const dvr = Math.max(10, Math.min(DVR_MAX_S, Math.floor(stream ? stream.retention_s : DVR_MAX_S)));
    if (player.available) {
      await player.open(streamId, { dvrS: dvr });
      player.video.play().catch(() => {});
    }
  } catch (error) {
    if (error instanceof AuthError) return askForKey("That key was refused.");
    notice(`Stream ${streamId}: ${error.message}`);
  }
  refreshTimeline(true);
}

$("stream").addEventListener("change", (event) => pickStream(event.target.value));

// the timeline -----------------------------------------------------------------------------
async function refreshTimeline(force = false) {
  const now = Date.now();
  if (!force && now - state.timelineAt < TIMELINE_REFRESH_MS) return;
  state.timelineAt = now;
  const [from, to] = timeline.view;
  const streamId = state.streamId;
  const query = new URLSearchParams({ from_ms: String(Math.floor(from)), to_ms: String(Math.ceil(to)) });
  try {
    const body = await api.request(`v1/streams/${encodeURIComponent(streamId)}/timeline?${query}`);
    if (streamId !== state.streamId) return;
    timeline.setData({ ...body, loudness: await loudness(from, to) });
  } catch (error) {
    if (error instanceof AuthError) askForKey("That key was refused.");
  }
}

/** The loudness envelope of the view: decoded audio, so fetched at most every 30 s. */
async function loudness(from, to) {
  if (to - from > LOUDNESS_MAX_SPAN_MS) return [];
  const bucket = Math.max(100, Math.ceil((to - from) / 400 / 100) * 100);
  const start = Math.floor(from / bucket) * bucket;
  const key = `${state.streamId}:${bucket}:${start}`;
  const cached = state.loudness;
  if (cached.key === key && Date.now() - cached.at < LOUDNESS_REFRESH_MS) return cached.buckets;
  const end = Math.min(Math.ceil(to / bucket) * bucket, start + LOUDNESS_MAX_SPAN_MS);
  const query = new URLSearchParams({ from_ms: String(start), to_ms: String(end), loudness_ms: String(bucket) });
  try {
    const body = await api.request(`v1/streams/${encodeURIComponent(state.streamId)}/timeline?${query}`);
    state.loudness = { at: Date.now(), key, buckets: body.loudness || [] };
  } catch {
    state.loudness = { at: Date.now(), key, buckets: [] };
  }
  return state.loudness.buckets;
}

function viewSpan() {
  const stream = state.streams.find((s) => s.id === state.streamId);
  if (state.spanMs !== "all") return state.spanMs;
  return Math.max(60000, (stream ? stream.retention_s : 3600) * 1000);
}

function follow(edgeMs, force = false) {
  if (!state.following && !force) return;
  const span = viewSpan();
  timeline.setView(edgeMs - span * 0.9, edgeMs + span * 0.1);
}

for (const button of document.querySelectorAll(".zoom button")) {
  button.addEventListener("click", () => {
    for (const other of document.querySelectorAll(".zoom button")) other.setAttribute("aria-pressed", "false");
    button.setAttribute("aria-pressed", "true");
    state.spanMs = button.dataset.span === "all" ? "all" : Number(button.dataset.span);
    const around = player.wallClock() ?? timeline.view[1];
    const span = viewSpan();
    state.following = player.isLive();
    timeline.setView(around - span * 0.9, around + span * 0.1);
    refreshTimeline(true);
  });
}

timeline.addEventListener("seek", async (event) => {
  state.following = false;
  await player.seekWall(event.detail);
});

player.addEventListener("playlist", (event) => {
  const details = event.detail;
  const last = details.fragments[details.fragments.length - 1];
  if (last && last.programDateTime) {
    state.edgeMs = last.programDateTime + last.duration * 1000;
    if (player.isLive()) state.following = true;
    follow(state.edgeMs);
  }
  refreshTimeline();
});

player.addEventListener("mode", (event) => {
  $("go-live").setAttribute("aria-pressed", String(event.detail === "live"));
});

// the picture's time -----------------------------------------------------------------------
function showPosition() {
  const wall = player.wallClock();
  const out = $("position");
  out.querySelector(".local").textContent = wall === null ? "--:--:--.---" : localTime(wall);
  out.querySelector(".utc").textContent = wall === null ? "--:--:--.---Z" : utcTime(wall);
  out.dataset.wallMs = wall === null ? "" : String(Math.round(wall));
  $("live-badge").hidden = !player.isLive();
  $("play").textContent = player.video.paused ? "Play" : "Pause";
  timeline.setPlayhead(wall, state.edgeMs ?? null);
  if (wall !== null && !state.following) {
    const [from, to] = timeline.view;
    if (wall < from || wall > to) {
      const span = viewSpan();
      timeline.setView(wall - span / 2, wall + span / 2);
      refreshTimeline(true);
    }
  }
}

for (const type of ["timeupdate", "seeked", "pause", "play", "playing"]) {
  player.video.addEventListener(type, showPosition);
}
player.addEventListener("frame", showPosition);

// in and out -------------------------------------------------------------------------------
function setMarks(inMs, outMs) {
  state.inMs = inMs;
  state.outMs = outMs;
  for (const [which, ms] of [["in", inMs], ["out", outMs]]) {
    const input = $(`${which}-local`);
    if (document.activeElement !== input) input.value = ms === null ? "" : localTime(ms);
    input.dataset.ms = ms === null ? "" : String(ms);
    input.title = ms === null ? "" : localDateTime(ms);
    $(`${which}-utc`).textContent = ms === null ? "—" : utcDateTime(ms);
  }
  const valid = inMs !== null && outMs !== null && outMs > inMs;
  $("duration").textContent = `Duration: ${inMs !== null && outMs !== null ? duration(outMs - inMs) : "—"}`;
  $("create").disabled = !valid;
  timeline.setMarks(inMs, outMs);
}

/** The picture on screen: its start on the wall clock, and how long it shows. */
function picture() {
  const start = player.wallClock();
  return start === null ? null : { start: Math.round(start), frameMs: player.frameMs() };
}

function markIn() {
  const shown = picture();
  if (!shown) return;
  state.frameMs = shown.frameMs;
  setMarks(shown.start, state.outMs !== null && state.outMs > shown.start ? state.outMs : null);
}

function markOut() {
  const shown = picture();
  if (!shown) return;
  state.frameMs = shown.frameMs;
  // Out is just after the last picture: the clip includes the one on screen.
  const out = Math.round(shown.start + shown.frameMs);
  setMarks(state.inMs !== null && state.inMs < out ? state.inMs : null, out);
}

$("set-in").addEventListener("click", markIn);
$("set-out").addEventListener("click", markOut);

for (const which of ["in", "out"]) {
  const input = $(`${which}-local`);
  input.addEventListener("change", () => {
    const near = state[`${which}Ms`] ?? player.wallClock() ?? Date.now();
    const ms = parseTime(input.value, near);
    if (ms === null) {
      $("clip-error").textContent = `${which}: "${input.value}" is not a time; use 14:03:15.200 (your zone) or 12:03:15.200Z (UTC)`;
      return;
    }
    $("clip-error").textContent = "";
    if (which === "in") setMarks(ms, state.outMs);
    else setMarks(state.inMs, ms);
    input.value = localTime(ms);
  });
}

for (const button of document.querySelectorAll(".quick button")) {
  button.addEventListener("click", () => {
    const shown = picture();
    if (!shown) return;
    // From the picture on screen (its program date time), not from this page's clock.
    const out = Math.round(shown.start + shown.frameMs);
    setMarks(out - Number(button.dataset.last), out);
  });
}

// the clip ---------------------------------------------------------------------------------
async function createClip() {
  if (state.inMs === null || state.outMs === null || state.outMs <= state.inMs) return;
  const formats = ["mp4", "hls"].filter((f) => $(`fmt-${f}`).checked);
  // Frame accuracy keeps the pictures covering start_ms and end_ms - 1: aim at the middle
  // of the first and of the last picture, so a rounding of either way cannot slip one.
  const half = Math.floor(state.frameMs / 2);
  const body = {
    stream: state.streamId,
    start_ms: state.inMs + half,
    end_ms: state.outMs - half + 1,
    accuracy: $("accuracy").value,
    formats: formats.length ? formats : ["mp4"],
  };
  if ($("accuracy").value === "keyframe") {
    body.start_ms = state.inMs;
    body.end_ms = state.outMs;
  }
  const name = $("clip-name").value.trim();
  if (name) body.name = name;
  if ($("reencode-edges").checked) body.reencode_edges = true;
  if ($("verify-decode").checked) body.verify = "decode";
  $("clip-error").textContent = "";
  try {
    await api.request("v1/clips", { method: "POST", body });
  } catch (error) {
    if (error instanceof AuthError) return askForKey("That key was refused.");
    $("clip-error").textContent = error.message;
  }
}

$("clip-form").addEventListener("submit", (event) => {
  event.preventDefault();
  createClip();
});

clips.addEventListener("play", (event) => {
  const clip = event.detail;
  const video = $("clip-video");
  const links = clip.links || {};
  $("clip-dialog-title").textContent = clip.name || clip.id;
  if (links.mp4) {
    video.src = api.sign(links.mp4, clip.stream);
  } else if (links.hls && player.available) {
    const hls = new window.Hls({ xhrSetup: (xhr, url) => xhr.open("GET", api.sign(url, clip.stream), true) });
    hls.loadSource(api.sign(links.hls, clip.stream));
    hls.attachMedia(video);
    $("clip-dialog").addEventListener("close", () => hls.destroy(), { once: true });
  }
  $("clip-dialog").showModal();
  video.play().catch(() => {});
});

$("clip-dialog").addEventListener("close", () => {
  const video = $("clip-video");
  video.pause();
  video.removeAttribute("src");
  video.load();
});

clips.addEventListener("error", (event) => {
  if (event.detail instanceof AuthError) askForKey("That key was refused.");
  else $("clip-error").textContent = event.detail.message;
});

// transport and keys ----------------------------------------------------------------------
$("play").addEventListener("click", () => player.toggle());
$("back10").addEventListener("click", () => {
  state.following = false;
  player.seekBy(-10);
});
$("fwd10").addEventListener("click", () => player.seekBy(10));
$("frame-back").addEventListener("click", () => player.step(-1));
$("frame-fwd").addEventListener("click", () => player.step(1));
$("go-live").addEventListener("click", async () => {
  state.following = true;
  await player.goLive();
  if (state.edgeMs) follow(state.edgeMs, true);
});

const KEYS = {
  i: markIn,
  o: markOut,
  ",": () => player.step(-1),
  ".": () => player.step(1),
  k: () => player.toggle(),
  " ": () => player.toggle(),
  j: () => {
    state.following = false;
    player.seekBy(-10);
  },
  l: () => player.seekBy(10),
  c: () => createClip(),
};

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  const target = event.target;
  const typing =
    target instanceof HTMLInputElement || target instanceof HTMLSelectElement || target instanceof HTMLTextAreaElement;
  if (typing || $("app").hidden || $("clip-dialog").open) return;
  // Space on a button presses the button; elsewhere it plays and pauses.
  if (event.key === " " && target instanceof HTMLButtonElement) return;
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  action();
});

// For scripts and tests: what the console holds, read-only.
window.livecutConsole = {
  marks: () => ({ in_ms: state.inMs, out_ms: state.outMs, frame_ms: state.frameMs }),
  wallClock: () => player.wallClock(),
  mode: () => player.mode,
  player,
};

start();
