// A queue's reception as residents read it (kiosk, public congestion page, floor board):
// `open`, `closing` (the day is full, or the floor manager closed it) or `closed` (outside the
// reception hours), with the time it next takes tickets.
//
// Times come from the server as RFC 3339 with the site's UTC offset
// ("2026-12-07T08:30:00+09:00"): the wall-clock time written there is the site's local time, so
// it is shown as written, whatever the time zone of the browser.

const MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2})(?::\d{2}(?:\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * The local date and time written in an RFC 3339 string, and its UTC offset in minutes (null
 * when the string has none); null when `s` is not such a string.
 */
export function wallClock(s) {
  const m = RFC3339.exec(String(s ?? "").trim());
  if (!m) return null;
  let offset = null;
  if (m[7]) {
    if (m[7].toUpperCase() === "Z") offset = 0;
    else {
      const sign = m[7][0] === "-" ? -1 : 1;
      const digits = m[7].slice(1).replace(":", "");
      offset = sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2, 4)));
    }
  }
  return {
    year: Number(m[1]), month: Number(m[2]), day: Number(m[3]),
    hour: Number(m[4]), minute: Number(m[5]),
    date: `${m[1]}-${m[2]}-${m[3]}`,
    offset,
  };
}

/** Today's date ("2026-12-07") at a UTC offset in minutes, or in an IANA time zone. */
export function todayAt(offsetOrZone, now = Date.now()) {
  if (typeof offsetOrZone === "number") {
    return new Date(now + offsetOrZone * 60000).toISOString().slice(0, 10);
  }
  try {
    // Swedish writes dates as YYYY-MM-DD.
    return new Date(now).toLocaleDateString("sv-SE", { timeZone: offsetOrZone || undefined });
  } catch {
    return new Date(now).toLocaleDateString("sv-SE");
  }
}

const hm = (w, pad) => `${pad ? String(w.hour).padStart(2, "0") : w.hour}:${String(w.minute).padStart(2, "0")}`;

/** "12月7日 8:30" / "Dec 7, 08:30". */
export function dateTimeText(w, lang) {
  return lang === "en" ? `${MONTHS_EN[w.month - 1]} ${w.day}, ${hm(w, true)}` : `${w.month}月${w.day}日 ${hm(w, false)}`;
}

/** "13:00" (ja without a leading zero: "8:30"; en "08:30"). */
export function timeText(w, lang) {
  return hm(w, lang === "en");
}

/** The state of a board or public queue entry; a server without reception hours says nothing: open. */
export function stateOf(q) {
  return q?.state === "closing" || q?.state === "closed" ? q.state : "open";
}

/**
 * Whether a `closing` queue takes tickets again later today (a lunch break): its next opening
 * is on the site's current date. `zone` (an IANA name) is the site's time zone when known;
 * otherwise today is taken at the offset written in `next_open`.
 */
export function reopensToday(nextOpen, zone, now = Date.now()) {
  const w = wallClock(nextOpen);
  if (!w) return false;
  const today = zone ? todayAt(zone, now) : w.offset !== null ? todayAt(w.offset, now) : todayAt(undefined, now);
  return w.date === today;
}

/**
 * What a resident reads about a queue that does not take tickets now, as {ja, en}; null while
 * it is open.
 *  - closing, reopening later today: 「受付を一時停止しています（次の受付 13:00）」
 *  - closing: 「本日の受付は終了しました」
 *  - closed: 「受付時間外です（次の受付 12月7日 8:30）」
 */
export function receptionNotice(state, nextOpen, zone, now = Date.now()) {
  const w = wallClock(nextOpen);
  if (state === "closing") {
    if (w && reopensToday(nextOpen, zone, now)) {
      return {
        ja: `受付を一時停止しています（次の受付 ${timeText(w, "ja")}）`,
        en: `Reception paused; reopens at ${timeText(w, "en")}`,
      };
    }
    return { ja: "本日の受付は終了しました", en: "Reception for today has closed" };
  }
  if (state === "closed") {
    if (w) {
      return {
        ja: `受付時間外です（次の受付 ${dateTimeText(w, "ja")}）`,
        en: `Outside reception hours (opens ${dateTimeText(w, "en")})`,
      };
    }
    return { ja: "受付時間外です", en: "Outside reception hours" };
  }
  return null;
}

/**
 * The next opening on a line of its own, for a notice that does not already say it
 * (「本日の受付は終了しました」): {ja, en}, or null when there is nothing to add.
 */
export function nextOpenLine(state, nextOpen, zone, now = Date.now()) {
  const w = wallClock(nextOpen);
  if (!w || state !== "closing" || reopensToday(nextOpen, zone, now)) return null;
  return { ja: `次の受付 ${dateTimeText(w, "ja")}`, en: `Next reception: ${dateTimeText(w, "en")}` };
}

/** A short label of the state: 受付中 / 受付終了 / 一時停止中 / 受付時間外. */
export function stateLabel(state, nextOpen, zone, now = Date.now()) {
  if (state === "closing") {
    return reopensToday(nextOpen, zone, now)
      ? { ja: "一時停止中", en: "Paused" }
      : { ja: "本日の受付終了", en: "Closed for today" };
  }
  if (state === "closed") return { ja: "受付時間外", en: "Outside hours" };
  return { ja: "受付中", en: "Open" };
}

/** The earliest of some RFC 3339 times (by instant), or null. */
export function earliest(times) {
  let best = null, bestAt = Infinity;
  for (const t of times) {
    const at = Date.parse(t ?? "");
    if (Number.isFinite(at) && at < bestAt) { best = t; bestAt = at; }
  }
  return best;
}
