// The daemon's API as the console uses it: the key in a header, signed URLs for media.

const KEY_STORAGE = "livecut.key";
const PLAYBACK_EXPIRES_S = 3600;

export class AuthError extends Error {}

export class ApiError extends Error {
  constructor(status, errors) {
    super(errors.join("; ") || `HTTP ${status}`);
    this.status = status;
    this.errors = errors;
  }
}

export class Api {
  constructor() {
    // Kept for this tab only; never written into a URL.
    this.key = sessionStorage.getItem(KEY_STORAGE) || "";
    this.signatures = new Map(); // stream id -> {query, expiresMs}
  }

  setKey(key) {
    this.key = key;
    this.signatures.clear();
    if (key) sessionStorage.setItem(KEY_STORAGE, key);
    else sessionStorage.removeItem(KEY_STORAGE);
  }

  headers(extra = {}) {
    return this.key ? { ...extra, Authorization: `Bearer ${this.key}` } : extra;
  }

  async request(path, { method = "GET", body } = {}) {
    const init = { method, headers: this.headers(), cache: "no-store" };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    if (response.status === 401) throw new AuthError("the API key was refused");
    if (response.status === 204) return null;
    const type = response.headers.get("Content-Type") || "";
    const data = type.includes("json") ? await response.json() : await response.text();
    if (!response.ok) {
      const errors = data && Array.isArray(data.errors) ? data.errors : [String(data).slice(0, 200)];
      throw new ApiError(response.status, errors);
    }
    return data;
  }

  async text(path) {
    return this.request(path);
  }

  /** An image or sheet fetched with the key, as an object URL the page can show. */
  async objectUrl(url) {
    const response = await fetch(url, { headers: this.headers() });
    if (response.status === 401) throw new AuthError("the API key was refused");
    if (!response.ok) throw new ApiError(response.status, []);
    return URL.createObjectURL(await response.blob());
  }

  /** Signed playback URLs of a stream, renewed well before they expire. */
  async playback(streamId) {
    const known = this.signatures.get(streamId);
    if (known && known.expiresMs - Date.now() > (PLAYBACK_EXPIRES_S * 1000) / 2) return known;
    const urls = await this.request(`v1/streams/${encodeURIComponent(streamId)}/playback`, {
      method: "POST",
      body: { expires_in_s: PLAYBACK_EXPIRES_S },
    });
    const signed = { ...urls, expiresMs: urls.expires_ms };
    this.signatures.set(streamId, signed);
    return signed;
  }

  /** `url` with the stream's current signature in place of any it carries. */
  sign(url, streamId) {
    const signed = this.signatures.get(streamId);
    if (!signed) return url;
    const parsed = new URL(url, location.href);
    if (parsed.origin !== location.origin) return url;
    const query = new URLSearchParams(signed.query);
    for (const [name, value] of query) parsed.searchParams.set(name, value);
    return parsed.href;
  }

  async eventsUrl(streamId) {
    const token = await this.request("v1/events/token", { method: "POST", body: {} });
    const query = new URLSearchParams(token.query);
    if (streamId) query.set("stream", streamId);
    // Beside the page, wherever public_url says the API is.
    return `v1/events?${query}`;
  }
}
