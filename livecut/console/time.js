// Wall-clock times as the console shows and reads them: the viewer's zone and UTC, to the ms.

const pad = (n, width = 2) => String(n).padStart(width, "0");

export function zoneName() {
  const offset = -new Date().getTimezoneOffset();
  const sign = offset >= 0 ? "+" : "−";
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  return `${zone} (UTC${sign}${pad(Math.floor(Math.abs(offset) / 60))}:${pad(Math.abs(offset) % 60)})`;
}

/** "14:03:15.200" in the viewer's zone. */
export function localTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
}

/** "12:03:15.200Z". */
export function utcTime(ms) {
  const d = new Date(ms);
  return `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}

/** "2026-01-01 14:03:15.200" in the viewer's zone. */
export function localDateTime(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${localTime(ms)}`;
}

/** "2026-01-01T12:03:15.200Z". */
export function utcDateTime(ms) {
  return new Date(ms).toISOString();
}

export function duration(ms) {
  if (!Number.isFinite(ms)) return "—";
  const sign = ms < 0 ? "−" : "";
  ms = Math.abs(Math.round(ms));
  const h = Math.floor(ms / 3600000);
  const m = Math.floor((ms % 3600000) / 60000);
  const s = Math.floor((ms % 60000) / 1000);
  const seconds = (h || m ? pad(s) : String(s)) + `.${pad(ms % 1000, 3)} s`;
  return sign + (h ? `${h} h ${pad(m)} min ${seconds}` : m ? `${m} min ${seconds}` : seconds);
}

const TIME = /^(\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,3}))?)?$/;
const DATE_TIME = /^(\d{4})-(\d{2})-(\d{2})[ T](.+)$/;

/**
 * A typed time: "HH:MM[:SS[.mmm]]" or "YYYY-MM-DD HH:MM:SS.mmm", in the viewer's zone, or
 * in UTC with a trailing "Z" or " UTC". Without a date, the day of `near` (the nearest
 * such instant to it). Returns Unix ms, or null when the text is not a time.
 */
export function parseTime(text, near) {
  let value = text.trim();
  let utc = false;
  if (/(?:\s*utc|z)$/i.test(value)) {
    utc = true;
    value = value.replace(/(?:\s*utc|z)$/i, "").trim();
  }
  let date = null;
  const withDate = DATE_TIME.exec(value);
  if (withDate) {
    date = [Number(withDate[1]), Number(withDate[2]) - 1, Number(withDate[3])];
    value = withDate[4].trim();
  }
  const time = TIME.exec(value);
  if (!time) return null;
  const [h, m, s] = [Number(time[1]), Number(time[2]), Number(time[3] || 0)];
  const ms = Number((time[4] || "0").padEnd(3, "0"));
  if (h > 23 || m > 59 || s > 59) return null;
  const make = (y, mo, d) =>
    utc ? Date.UTC(y, mo, d, h, m, s, ms) : new Date(y, mo, d, h, m, s, ms).getTime();
  if (date) return make(...date);
  const base = new Date(near);
  const parts = utc
    ? [base.getUTCFullYear(), base.getUTCMonth(), base.getUTCDate()]
    : [base.getFullYear(), base.getMonth(), base.getDate()];
  const candidates = [-1, 0, 1].map((days) => make(parts[0], parts[1], parts[2] + days));
  return candidates.reduce((a, b) => (Math.abs(b - near) < Math.abs(a - near) ? b : a));
}
