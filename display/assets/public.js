// The public congestion page for the city's website and residents' phones:
//   /public/congestion          every site, each queue with its 混雑 lamp;
//   /public/congestion/{site}   one site's queues, then its forecast calendar (weekday × hour,
//                               and the next 8 weeks).
// `?lang=en` shows it in English (Japanese by default). No token, no personal data: the figures
// come from GET /api/v1/public/congestion (read again every 15 s; the browser revalidates with
// the ETag, so an unchanged answer is a bodiless 304) and …/congestion/calendar. The page may be
// framed by the city's website: no fixed heights; when framed it tells its parent its height.
import { esc, waitText } from "/assets/common.js";
import { receptionNotice, nextOpenLine, stateLabel, stateOf, wallClock, timeText } from "/assets/reception.js";

const POLL_MS = 15_000;
const CALENDAR_MS = 30 * 60_000;
const MAX_BACKOFF_MS = 120_000;

const PARTS = location.pathname.split("/").filter(Boolean); // ["public", "congestion", site?]
const SITE = PARTS.length >= 3 ? decodeURIComponent(PARTS[2]) : null;
const LANG = new URLSearchParams(location.search).get("lang") === "en" ? "en" : "ja";
const OTHER = LANG === "ja" ? "en" : "ja";

const $ = (id) => document.getElementById(id);

const T = {
  title: { ja: "窓口の混雑状況", en: "Congestion at the counters" },
  siteTitle: { ja: (n) => `${n}の混雑状況`, en: (n) => `${n}: congestion` },
  now: { ja: "現在の状況", en: "Right now" },
  waiting: { ja: "待ち人数", en: "Waiting" },
  wait: { ja: "待ち時間の目安", en: "Estimated wait" },
  calling: { ja: "呼出中", en: "Now calling" },
  people: { ja: (n) => `${n}人`, en: (n) => (n === 1 ? "1 person" : `${n} people`) },
  none: { ja: "なし", en: "None" },
  until: { ja: (t) => `本日の受付は ${t} まで`, en: (t) => `Tickets until ${t} today` },
  updated: { ja: (t) => `更新 ${t}`, en: (t) => `Updated ${t}` },
  details: { ja: "混雑予想を見る", en: "See the forecast" },
  allSites: { ja: "すべての窓口の混雑状況", en: "All offices" },
  langLink: { ja: "English", en: "日本語" },
  loading: { ja: "読み込んでいます…", en: "Loading…" },
  failed: { ja: "混雑状況を読み込めませんでした。しばらくしてから再度お試しください。",
            en: "The congestion figures could not be loaded. Please try again later." },
  stale: { ja: "最新の情報に更新できませんでした。前回の情報を表示しています。",
           en: "Could not update; showing the last figures." },
  unknownSite: { ja: "この拠点はありません。", en: "There is no such office." },
  noSites: { ja: "表示できる拠点がありません。", en: "No office to show." },
  forecast: { ja: "混雑予想", en: "Congestion forecast" },
  weekly: { ja: "曜日・時間帯別の混雑予想", en: "By weekday and hour" },
  weeklyCaption: { ja: "曜日・時間帯ごとの待ち時間の目安（分）", en: "Typical wait by weekday and hour (minutes)" },
  hourHead: { ja: "時間帯", en: "Hour" },
  hour: { ja: (h) => `${h}時台`, en: (h) => `${String(h).padStart(2, "0")}:00` },
  dates: { ja: "今後8週間の混雑予想", en: "The next 8 weeks" },
  datesCaption: { ja: (a, b) => `${a}〜${b}の混雑予想`, en: (a, b) => `Forecast from ${a} to ${b}` },
  closedDay: { ja: "休", en: "Closed" },
  closedDayLong: { ja: "閉庁日", en: "Closed" },
  season: { ja: "引越しシーズン（3〜4月、混み合います）", en: "Moving season (March–April, busier)" },
  seasonShort: { ja: "引越しシーズン", en: "moving season" },
  noHours: { ja: "受付なし", en: "no reception" },
  minutesNote: { ja: "数字は待ち時間の目安（分）です。", en: "Numbers are the typical wait in minutes." },
  forecastNote: { ja: "予想はこれまでの来庁状況にもとづく目安です。実際の混雑は上の「現在の状況」をご覧ください。",
                  en: "Forecasts are estimates from past visits. For the actual situation, see “Right now” above." },
  noForecast: { ja: "混雑予想はまだありません。", en: "No forecast yet." },
  legend: { ja: "凡例", en: "Legend" },
  minutesFrom: { ja: (m) => `待ち${m}分以上`, en: (m) => `wait ${m} min or more` },
  minutesBelow: { ja: (m) => `待ち${m}分未満`, en: (m) => `wait under ${m} min` },
  footer: { ja: "待ち時間は目安です。窓口の状況により前後します。", en: "Waiting times are estimates and may vary." },
};
const t = (o, ...args) => {
  const v = o[LANG] ?? o.ja;
  return typeof v === "function" ? v(...args) : v;
};

const LEVEL = {
  low: { ja: "空いています", en: "Not busy", mark: "○" },
  medium: { ja: "やや混雑", en: "Somewhat busy", mark: "△" },
  high: { ja: "混雑", en: "Busy", mark: "●" },
};
const levelOf = (l) => (LEVEL[l] ? l : null);

const WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const WD = {
  ja: { mon: "月", tue: "火", wed: "水", thu: "木", fri: "金", sat: "土", sun: "日" },
  jaLong: { mon: "月曜日", tue: "火曜日", wed: "水曜日", thu: "木曜日", fri: "金曜日", sat: "土曜日", sun: "日曜日" },
  en: { mon: "Mon", tue: "Tue", wed: "Wed", thu: "Thu", fri: "Fri", sat: "Sat", sun: "Sun" },
  enLong: { mon: "Monday", tue: "Tuesday", wed: "Wednesday", thu: "Thursday", fri: "Friday", sat: "Saturday", sun: "Sunday" },
};
const MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

const P = {
  data: null,          // the last congestion answer
  checkedAt: 0,        // when the server last confirmed it (its Date header), ms
  calendar: null,      // the last calendar answer (one site)
  calendarError: false,
  failures: 0,
  error: null,         // "unknown_site" | "failed"
};

// ---------------------------------------------------------------------------------------------
// Reading the figures
// ---------------------------------------------------------------------------------------------
class HttpError extends Error {
  constructor(status, retryAfter) {
    super(`HTTP ${status}`);
    this.status = status;
    this.retryAfter = retryAfter;
  }
}

/** GET JSON, revalidating what the browser holds (`If-None-Match`): unchanged figures are a 304. */
async function getJson(path) {
  const res = await fetch(path, { cache: "no-cache", headers: { Accept: "application/json" } });
  if (!res.ok) {
    const ra = Number(res.headers.get("Retry-After"));
    throw new HttpError(res.status, Number.isFinite(ra) && ra > 0 ? ra : 0);
  }
  const date = Date.parse(res.headers.get("Date") || "");
  return { body: await res.json(), date: Number.isFinite(date) ? date : Date.now() };
}

const congestionPath = () =>
  `/api/v1/public/congestion${SITE ? `?site=${encodeURIComponent(SITE)}` : ""}`;

let pollTimer = null;
let lastPoll = 0;
async function poll() {
  clearTimeout(pollTimer);
  lastPoll = Date.now();
  let wait = POLL_MS;
  try {
    const { body, date } = await getJson(congestionPath());
    P.data = body;
    P.checkedAt = Math.max(date, Date.parse(body.generated_at) || 0);
    P.failures = 0;
    P.error = null;
  } catch (e) {
    P.failures += 1;
    if (e instanceof HttpError && e.status === 404) P.error = "unknown_site";
    else P.error = "failed";
    wait = Math.min(MAX_BACKOFF_MS, POLL_MS * 2 ** Math.min(P.failures - 1, 3));
    if (e instanceof HttpError && e.retryAfter) wait = Math.max(wait, e.retryAfter * 1000);
  }
  render();
  pollTimer = setTimeout(poll, wait);
}

let calendarTimer = null;
async function loadCalendar() {
  clearTimeout(calendarTimer);
  if (!SITE) return;
  try {
    P.calendar = (await getJson(`/api/v1/public/congestion/calendar?site=${encodeURIComponent(SITE)}`)).body;
    P.calendarError = false;
  } catch {
    P.calendarError = !P.calendar;
  }
  renderCalendar();
  calendarTimer = setTimeout(loadCalendar, CALENDAR_MS);
}

// A page left in a background tab catches up when it is looked at again.
document.addEventListener("visibilitychange", () => {
  if (!document.hidden && Date.now() - lastPoll >= POLL_MS) poll();
});

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------
/** The site's UTC offset (minutes) as its times carry it, or null when none says. */
function siteOffset(site) {
  for (const q of site?.queues || []) {
    for (const s of [q.next_open, q.last_reception]) {
      const w = wallClock(s);
      if (w && w.offset !== null) return w.offset;
    }
  }
  return null;
}

/** "10:05:12" at the site's offset when known, else in the browser's time zone. */
function clockAt(ms, offset) {
  if (offset !== null && offset !== undefined) return new Date(ms + offset * 60000).toISOString().slice(11, 19);
  return new Date(ms).toLocaleTimeString("ja-JP", { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false });
}

const nameIn = (n) => n?.[LANG] || n?.ja || "";

function langHref(lang) {
  const q = new URLSearchParams(location.search);
  if (lang === "ja") q.delete("lang"); else q.set("lang", lang);
  const s = q.toString();
  return `${location.pathname}${s ? `?${s}` : ""}`;
}

function sitePath(id) {
  return `/public/congestion/${encodeURIComponent(id)}${LANG === "en" ? "?lang=en" : ""}`;
}

function renderFrame() {
  document.documentElement.lang = LANG;
  document.body.dataset.lang = LANG;
  const link = $("lang-link");
  link.textContent = T.langLink[LANG];
  link.lang = OTHER;
  link.hreflang = OTHER;
  link.href = langHref(OTHER);
  const all = `/public/congestion${LANG === "en" ? "?lang=en" : ""}`;
  $("foot").innerHTML = `<p>${esc(t(T.footer))}</p>${SITE ? `<p><a href="${esc(all)}">${esc(t(T.allSites))}</a></p>` : ""}`;
}

function render() {
  const main = $("main");
  const data = P.data;
  const site = SITE ? data?.sites?.find((s) => s.id === SITE) : null;
  // Title
  const title = site ? t(T.siteTitle, nameIn(site.name)) : t(T.title);
  $("title").textContent = title;
  document.title = title;
  // Status line and updated time
  const status = $("status");
  if (!data) {
    status.textContent = "";
    main.setAttribute("aria-busy", P.error ? "false" : "true");
    if (P.error === "unknown_site") main.innerHTML = `<p class="pc-error" role="alert">${esc(t(T.unknownSite))}</p>`;
    else if (P.error) main.innerHTML = `<p class="pc-error" role="alert">${esc(t(T.failed))}</p>`;
    else main.innerHTML = `<p class="pc-loading">${esc(t(T.loading))}</p>`;
    $("updated").textContent = "";
    notifyHeight();
    return;
  }
  status.textContent = P.error ? t(T.stale) : "";
  status.dataset.kind = P.error ? "error" : "";
  main.setAttribute("aria-busy", "false");
  const offset = siteOffset(site || data.sites?.[0]);
  const at = clockAt(P.checkedAt || Date.parse(data.generated_at), offset);
  const upd = $("updated");
  upd.textContent = t(T.updated, at);
  upd.dataset.generatedAt = data.generated_at || "";

  if (SITE) {
    if (!site) {
      main.innerHTML = `<p class="pc-error" role="alert">${esc(t(T.unknownSite))}</p>`;
      notifyHeight();
      return;
    }
    let now = $("now");
    if (!now) {
      main.innerHTML = `<section id="now" aria-labelledby="now-h"></section>
        <section id="forecast" class="pc-forecast" aria-labelledby="forecast-h"></section>`;
      now = $("now");
      renderCalendar();
    }
    now.innerHTML = `<h2 id="now-h">${esc(t(T.now))}</h2>${siteBlock(site, { headingLevel: 3 })}`;
  } else {
    const sites = data.sites || [];
    main.innerHTML = sites.length
      ? sites.map((s) => `<section class="pc-site-section" aria-labelledby="site-${esc(s.id)}-h">
          <h2 id="site-${esc(s.id)}-h"><a href="${esc(sitePath(s.id))}">${esc(nameIn(s.name))}</a></h2>
          ${siteBlock(s, { headingLevel: 3 })}
          <p class="pc-more"><a href="${esc(sitePath(s.id))}">${esc(t(T.details))} →</a></p>
        </section>`).join("")
      : `<p class="pc-error">${esc(t(T.noSites))}</p>`;
  }
  notifyHeight();
}

/** One site's queues as cards. */
function siteBlock(site, { headingLevel }) {
  const h = `h${headingLevel}`;
  const cards = (site.queues || []).map((q) => {
    const state = stateOf(q);
    const level = levelOf(q.level);
    const open = state === "open";
    const lamp = open && level
      ? `<p class="pc-lamp" data-level="${level}"><span class="pc-dot" aria-hidden="true">${LEVEL[level].mark}</span><span class="pc-lamp-text">${esc(LEVEL[level][LANG])}</span></p>`
      : `<p class="pc-lamp" data-level="none" data-state="${esc(state)}"><span class="pc-dot" aria-hidden="true">×</span><span class="pc-lamp-text">${esc(t(stateLabel(state, q.next_open)))}</span></p>`;
    const notice = receptionNotice(state, q.next_open);
    const line = nextOpenLine(state, q.next_open);
    const until = open ? wallClock(q.last_reception) : null;
    const calling = (q.now_calling || []).map((n) => `<span class="pc-num">${esc(n)}</span>`).join(" ");
    return `<article class="pc-queue" data-queue="${esc(q.id)}" data-state="${esc(state)}" data-level="${esc(level || "")}">
        <${h} class="pc-qname">${esc(nameIn(q.name))}</${h}>
        ${lamp}
        ${notice ? `<p class="pc-notice" data-state="${esc(state)}">${esc(t(notice))}${line ? `<br><span class="pc-next">${esc(t(line))}</span>` : ""}</p>` : ""}
        <dl class="pc-facts">
          <div class="pc-fact"><dt>${esc(t(T.waiting))}</dt>
            <dd class="waiting" data-waiting="${Number(q.waiting) || 0}"><span class="pc-n">${Number(q.waiting) || 0}</span><span class="pc-unit">${LANG === "ja" ? "人" : ""}</span></dd></div>
          <div class="pc-fact"><dt>${esc(t(T.wait))}</dt>
            <dd class="wait" data-wait-s="${Number(q.estimated_wait_s) || 0}">${esc(waitText(q.estimated_wait_s, LANG))}</dd></div>
          <div class="pc-fact pc-fact-wide"><dt>${esc(t(T.calling))}</dt>
            <dd class="calling">${calling || `<span class="pc-none">${esc(t(T.none))}</span>`}</dd></div>
        </dl>
        ${until ? `<p class="pc-until">${esc(t(T.until, timeText(until, LANG)))}</p>` : ""}
      </article>`;
  }).join("");
  return `<div class="pc-queues" data-site="${esc(site.id)}" data-seq="${Number(site.seq) || 0}">${cards}</div>`;
}

// ---- the forecast calendar (one site) ----
// Down to 5 minutes, so a figure never reaches a threshold its colour has not (43 min shows 40, △).
const minutes = (s) => Math.max(0, Math.floor((Number(s) || 0) / 300) * 5);

function levelCell(level, waitS, label) {
  const lv = levelOf(level);
  if (!lv || waitS === null || waitS === undefined) {
    return `<td class="pc-cell" data-level="none"><span aria-hidden="true">–</span><span class="sr-only">${esc(label)}: ${esc(t(T.noHours))}</span></td>`;
  }
  const m = minutes(waitS);
  return `<td class="pc-cell" data-level="${lv}"><span class="pc-mk" aria-hidden="true">${LEVEL[lv].mark}</span><span class="pc-min" aria-hidden="true">${m}</span><span class="sr-only">${esc(label)}: ${esc(LEVEL[lv][LANG])}, ${esc(waitText(waitS, LANG))}</span></td>`;
}

function legend(cal) {
  const med = cal?.levels?.medium_wait_min, high = cal?.levels?.high_wait_min;
  const range = {
    low: med ? t(T.minutesBelow, med) : "",
    medium: med ? t(T.minutesFrom, med) : "",
    high: high ? t(T.minutesFrom, high) : "",
  };
  const items = Object.entries(LEVEL).map(([k, v]) =>
    `<li><span class="pc-sw" data-level="${k}" aria-hidden="true">${v.mark}</span>${esc(v[LANG])}${range[k] ? `<span class="pc-range">（${esc(range[k])}）</span>` : ""}</li>`).join("");
  return `<div class="pc-legend"><h4 class="sr-only">${esc(t(T.legend))}</h4><ul>${items}
      <li><span class="pc-sw" data-level="closed" aria-hidden="true">${esc(t(T.closedDay))}</span>${esc(t(T.closedDayLong))}</li>
      <li><span class="pc-sw" data-level="season" aria-hidden="true">★</span>${esc(t(T.season))}</li></ul>
      <p class="pc-small">${esc(t(T.minutesNote))}</p></div>`;
}

function weeklyTable(cal) {
  const byDay = new Map((cal.weekly || []).map((w) => [w.weekday, w.hours || []]));
  const days = WEEKDAYS.filter((d) => byDay.has(d));
  const hours = [...new Set(days.flatMap((d) => byDay.get(d).map((h) => h.hour)))].sort((a, b) => a - b);
  if (!days.length || !hours.length) return `<p class="pc-small">${esc(t(T.noForecast))}</p>`;
  const long = LANG === "ja" ? WD.jaLong : WD.enLong;
  const head = days.map((d) => `<th scope="col" abbr="${esc(long[d])}"><span aria-hidden="true">${esc(WD[LANG][d])}</span><span class="sr-only">${esc(long[d])}</span></th>`).join("");
  const rows = hours.map((h) => {
    const cells = days.map((d) => {
      const e = byDay.get(d).find((x) => x.hour === h);
      return levelCell(e?.level, e?.expected_wait_s ?? null, `${long[d]} ${t(T.hour, h)}`);
    }).join("");
    return `<tr><th scope="row">${esc(t(T.hour, h))}</th>${cells}</tr>`;
  }).join("");
  return `<div class="pc-scroll"><table class="pc-week" id="weekly">
      <caption>${esc(t(T.weeklyCaption))}</caption>
      <thead><tr><th scope="col">${esc(t(T.hourHead))}</th>${head}</tr></thead>
      <tbody>${rows}</tbody></table></div>`;
}

function dateText(iso, withWeekday = false, weekday = "") {
  const [, m, d] = iso.split("-").map(Number);
  if (LANG === "ja") return `${m}月${d}日${withWeekday && weekday ? `（${WD.ja[weekday]}）` : ""}`;
  return `${withWeekday && weekday ? `${WD.en[weekday]} ` : ""}${MONTHS_EN[m - 1]} ${d}`;
}

function datesCalendar(cal) {
  const dates = [...(cal.dates || [])].sort((a, b) => a.date.localeCompare(b.date));
  if (!dates.length) return `<p class="pc-small">${esc(t(T.noForecast))}</p>`;
  const first = WEEKDAYS.indexOf(dates[0].weekday);
  const cells = [...Array(Math.max(0, first)).fill(null), ...dates];
  while (cells.length % 7) cells.push(null);
  let prevMonth = null;
  const rows = [];
  for (let i = 0; i < cells.length; i += 7) {
    rows.push(`<tr>${cells.slice(i, i + 7).map((e) => {
      if (!e) return `<td class="pc-day pc-pad" aria-hidden="true"></td>`;
      const [, m, d] = e.date.split("-").map(Number);
      const num = m !== prevMonth ? `${m}/${d}` : String(d);
      prevMonth = m;
      const label = dateText(e.date, true, e.weekday);
      const season = e.season ? ` data-season="1"` : "";
      const star = e.season ? `<span class="pc-star" aria-hidden="true">★</span>` : "";
      const seasonSr = e.season ? `, ${t(T.seasonShort)}` : "";
      if (!e.open) {
        return `<td class="pc-day" data-date="${esc(e.date)}" data-level="closed"${season}><span class="pc-dnum" aria-hidden="true">${esc(num)}</span>${star}
          <span class="pc-mk" aria-hidden="true">${esc(t(T.closedDay))}</span><span class="sr-only">${esc(label)}: ${esc(t(T.closedDayLong))}${esc(seasonSr)}</span></td>`;
      }
      const lv = levelOf(e.level);
      const what = lv ? `${LEVEL[lv][LANG]}, ${waitText(e.expected_wait_s, LANG)}` : t(T.noForecast);
      return `<td class="pc-day" data-date="${esc(e.date)}" data-level="${lv || "none"}"${season}><span class="pc-dnum" aria-hidden="true">${esc(num)}</span>${star}
        <span class="pc-mk" aria-hidden="true">${lv ? LEVEL[lv].mark : "–"}</span><span class="sr-only">${esc(label)}: ${esc(what)}${esc(seasonSr)}</span></td>`;
    }).join("")}</tr>`);
  }
  const long = LANG === "ja" ? WD.jaLong : WD.enLong;
  const head = WEEKDAYS.map((d) => `<th scope="col" abbr="${esc(long[d])}">${esc(WD[LANG][d])}</th>`).join("");
  const caption = t(T.datesCaption, dateText(dates[0].date), dateText(dates[dates.length - 1].date));
  return `<div class="pc-scroll"><table class="pc-month" id="dates">
      <caption>${esc(caption)}</caption>
      <thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table></div>`;
}

function renderCalendar() {
  const el = $("forecast");
  if (!el) return;
  const cal = P.calendar;
  let body;
  if (!cal) body = `<p class="pc-small">${esc(P.calendarError ? t(T.noForecast) : t(T.loading))}</p>`;
  else {
    body = `${legend(cal)}
      <div class="pc-cal-grid">
        <section class="pc-cal" aria-labelledby="weekly-h"><h3 id="weekly-h">${esc(t(T.weekly))}</h3>${weeklyTable(cal)}</section>
        <section class="pc-cal" aria-labelledby="dates-h"><h3 id="dates-h">${esc(t(T.dates))}</h3>${datesCalendar(cal)}</section>
      </div>
      <p class="pc-small">${esc(t(T.forecastNote))}</p>`;
  }
  el.innerHTML = `<h2 id="forecast-h">${esc(t(T.forecast))}</h2>${body}`;
  el.dataset.ready = cal ? "1" : "";
  notifyHeight();
}

// ---- framed on the city's website: tell the parent page our height ----
let lastHeight = 0;
function notifyHeight() {
  if (window.parent === window) return;
  const h = Math.ceil(document.documentElement.scrollHeight);
  if (h === lastHeight) return;
  lastHeight = h;
  try { window.parent.postMessage({ type: "madoguchi:congestion-height", height: h }, "*"); } catch { /* no parent to tell */ }
}
if (window.parent !== window && "ResizeObserver" in window) new ResizeObserver(notifyHeight).observe(document.body);

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------
renderFrame();
render();
poll();
loadCalendar();
