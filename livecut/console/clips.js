// Recent clips of the stream, kept current by the daemon's event stream (no polling).

import { duration, localTime, utcTime } from "./time.js";

const LIST_LIMIT = 20;
const RECONNECT_MS = [1000, 2000, 5000, 10000, 30000];
const STATE_LABELS = {
  queued: "queued",
  waiting: "waiting",
  processing: "processing",
  ready: "ready",
  failed: "failed",
};

export class ClipList extends EventTarget {
  constructor({ list, empty, status, template }, api) {
    super();
    Object.assign(this, { list, empty, status, template, api });
    this.streamId = null;
    this.items = new Map(); // clip id -> <li>
    this.source = null;
    this.failures = 0;
    this.generation = 0;
  }

  async follow(streamId) {
    this.streamId = streamId;
    this.generation += 1;
    this.close();
    this.list.replaceChildren();
    this.items.clear();
    this._showEmpty();
    await this._connect(this.generation);
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
  }

  async _connect(generation) {
    let url;
    try {
      url = await this.api.eventsUrl(this.streamId);
    } catch (error) {
      this._retry(generation, error);
      return;
    }
    if (generation !== this.generation) return;
    const source = new EventSource(url);
    this.source = source;
    source.addEventListener("open", () => {
      this.failures = 0;
      this.status.textContent = "· live";
      this.status.dataset.state = "open";
    });
    // Sent on connecting and whenever this page fell behind: read the list afresh.
    source.addEventListener("resync", () => this.refresh());
    for (const state of [...Object.keys(STATE_LABELS), "deleted"]) {
      source.addEventListener(`clip.${state}`, (event) => this._change(state, JSON.parse(event.data)));
    }
    source.addEventListener("error", () => {
      if (source.readyState !== EventSource.CLOSED) {
        this.status.textContent = "· reconnecting";
        return; // EventSource reconnects by itself with the same URL
      }
      // Refused (its token expired, the daemon restarted with other keys): a new token.
      source.close();
      this._retry(generation, null);
    });
  }

  _retry(generation, error) {
    if (generation !== this.generation) return;
    this.status.textContent = "· disconnected";
    this.status.dataset.state = "closed";
    const wait = RECONNECT_MS[Math.min(this.failures, RECONNECT_MS.length - 1)];
    this.failures += 1;
    if (error) this.dispatchEvent(new CustomEvent("error", { detail: error }));
    setTimeout(() => {
      if (generation === this.generation) this._connect(generation);
    }, wait);
  }

  async refresh() {
    const streamId = this.streamId;
    const query = new URLSearchParams({ stream: streamId, limit: String(LIST_LIMIT) });
    const body = await this.api.request(`v1/clips?${query}`);
    if (streamId !== this.streamId) return;
    const seen = new Set();
    for (const clip of body.clips) {
      seen.add(clip.id);
      this._upsert(clip);
    }
    for (const [id, item] of this.items) {
      if (!seen.has(id)) {
        item.remove();
        this.items.delete(id);
      }
    }
    this._order();
    this._showEmpty();
  }

  _change(state, clip) {
    if (state === "deleted") {
      const item = this.items.get(clip.id);
      if (item) item.remove();
      this.items.delete(clip.id);
    } else if (clip.stream === this.streamId) {
      this._upsert(clip);
      this._order();
    }
    this._showEmpty();
    this.dispatchEvent(new CustomEvent("change", { detail: { state, clip } }));
  }

  _order() {
    const items = [...this.items.values()].sort((a, b) => Number(b.dataset.created) - Number(a.dataset.created));
    items.forEach((item, n) => {
      if (this.list.children[n] !== item) this.list.insertBefore(item, this.list.children[n] || null);
    });
    for (const extra of items.slice(LIST_LIMIT)) {
      extra.remove();
      this.items.delete(extra.dataset.id);
    }
  }

  _showEmpty() {
    this.empty.hidden = this.items.size > 0;
  }

  _upsert(clip) {
    let item = this.items.get(clip.id);
    if (!item) {
      item = this.template.content.firstElementChild.cloneNode(true);
      item.dataset.id = clip.id;
      item.dataset.created = String(clip.created_ms);
      item.querySelector(".delete").addEventListener("click", () => this._delete(clip.id));
      // Signed again on the way out: the page may have been open longer than a signature.
      item.querySelector(".download").addEventListener("click", (event) => {
        const links = item.clip.links || {};
        if (links.mp4) event.currentTarget.href = this.api.sign(links.mp4, item.clip.stream);
      });
      item.querySelector(".play").addEventListener("click", () =>
        this.dispatchEvent(new CustomEvent("play", { detail: item.clip })),
      );
      this.items.set(clip.id, item);
      this.list.prepend(item);
    }
    item.clip = clip;
    const start = clip.start_ms ?? clip.requested.start_ms;
    const end = clip.end_ms ?? clip.requested.end_ms;
    item.querySelector(".clip-name").textContent = clip.name || clip.id;
    item.querySelector(".clip-range").textContent = `${localTime(start)} → ${localTime(end)}`;
    item.querySelector(".clip-duration").textContent = duration(end - start);
    // The UTC range, or what went wrong: one line either way, so the row keeps its size.
    const detail = item.querySelector(".clip-error");
    detail.textContent = clip.error || `${utcTime(start)} → ${utcTime(end)}`;
    detail.title = detail.textContent;
    detail.classList.toggle("error", Boolean(clip.error));
    const state = item.querySelector(".state");
    state.dataset.state = clip.state;
    state.textContent =
      clip.state === "processing" && typeof clip.progress === "number"
        ? `processing ${Math.round(clip.progress * 100)}%`
        : STATE_LABELS[clip.state] || clip.state;
    item.dataset.state = clip.state;
    const ready = clip.state === "ready";
    const links = clip.links || {};
    const play = item.querySelector(".play");
    play.disabled = !ready || !(links.mp4 || links.hls);
    const download = item.querySelector(".download");
    if (ready && links.mp4) {
      download.href = this.api.sign(links.mp4, clip.stream);
      download.setAttribute("download", `${clip.name || clip.id}.mp4`);
      download.removeAttribute("aria-disabled");
    } else {
      download.removeAttribute("href");
      download.setAttribute("aria-disabled", "true");
    }
    const img = item.querySelector("img");
    if (ready && links.mp4 && img.hidden) {
      img.src = this.api.sign(`v1/clips/${encodeURIComponent(clip.id)}/thumbnail.jpg?time=0&width=192`, clip.stream);
      img.hidden = false;
    }
  }

  async _delete(clipId) {
    try {
      await this.api.request(`v1/clips/${encodeURIComponent(clipId)}`, { method: "DELETE" });
    } catch (error) {
      this.dispatchEvent(new CustomEvent("error", { detail: error }));
      return;
    }
    // The event stream says so too; the list need not wait for it.
    this._change("deleted", { id: clipId });
  }
}
