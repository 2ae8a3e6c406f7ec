// Shared by every madoguchi screen: the live feed, API calls, small formatting helpers, and the
// console shell (a token asked once per device, messages) of the staff screens.
// Plain ES module, no build step. Pages load only modules from /assets/: the Content-Security-Policy
// allows no inline script and no inline event handler (`onclick="…"`); listen with addEventListener.

/** The site id from a path like /screens/lobby/{site}. */
export function siteFromPath() {
  const parts = location.pathname.split("/").filter(Boolean);
  return decodeURIComponent(parts[parts.length - 1] || "");
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** Escapes text for innerHTML. */
export function esc(s) {
  return String(s ?? "").replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

/** "約25分 / about 25 min" style wait text; `lang` "ja" or "en". */
/** A wait in seconds as people read it: 「まもなく」 below 3 minutes, else to the nearest
 *  5 minutes (the printed ticket rounds the same way). */
export function waitText(seconds, lang = "ja") {
  const m = waitMinutes(seconds);
  if (m === null) return lang === "ja" ? "まもなく" : "shortly";
  return lang === "ja" ? `約${m}分` : `about ${m} min`;
}

/** Minutes to show for a wait, or null for 「まもなく」 (below 3 minutes). */
export function waitMinutes(seconds) {
  const s = seconds || 0;
  if (s < 180) return null;
  return Math.max(5, Math.round(s / 300) * 5);
}

/** Local time "10:05" in the site's time zone. */
export function clock(t, timeZone) {
  return new Date(t).toLocaleTimeString("ja-JP", { hour: "2-digit", minute: "2-digit", timeZone });
}

/** A {ja, en} label as `日本語 <span class="en">English</span>`, escaped, for innerHTML. */
export function bilingual(n) {
  return `${esc(n?.ja)} <span class="en">${esc(n?.en)}</span>`;
}

/** A duration as "m:ss", or "h:mm:ss" from an hour on. */
export function elapsed(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  return (h ? `${h}:${String(m).padStart(2, "0")}` : String(m)) + ":" + String(r).padStart(2, "0");
}

/** Names by id from a catalog list: name(catalog.queues, "onestop") → {ja, en}. */
export function nameOf(list, id) {
  const x = (list || []).find((e) => (e.id ?? e.code) === id);
  return x ? x.name : { ja: String(id), en: String(id) };
}

export class ApiError extends Error {
  constructor(status, code, message, retryAfter = 0, details = null) {
    super(message);
    this.status = status;
    this.code = code;
    /** Seconds the server asked us to wait (`Retry-After` on 429 or 503), else 0. */
    this.retryAfter = retryAfter;
    /** The server's whole `error` object, for fields a code adds (`next_open` of `queue_closed`). */
    this.details = details;
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `ms` stretched by up to `spread` (never shortened), so clients told the same wait do not return together. */
export function jittered(ms, spread = 0.2) {
  return ms * (1 + Math.random() * spread);
}

/** How long (ms) an error asks us to wait before trying again: its `Retry-After`, else 0. */
export function retryAfterMs(e) {
  return e instanceof ApiError && e.retryAfter > 0 ? e.retryAfter * 1000 : 0;
}

/** `Retry-After` as whole seconds: delta-seconds or an HTTP date; 0 when absent or unreadable. */
function parseRetryAfter(value) {
  if (!value) return 0;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Math.max(1, Number(v));
  const at = Date.parse(v);
  return Number.isNaN(at) ? 0 : Math.max(1, Math.ceil((at - Date.now()) / 1000));
}

// Only requests without a token are rate limited (per client address, shared by the public
// routes), so after a 429 they all wait out its Retry-After; staff requests never do.
let publicCoolUntil = 0;

/** Milliseconds left before requests without a token may be sent again (0: now). */
export function coolDownLeft() {
  return Math.max(0, publicCoolUntil - Date.now());
}

const BUSY = "混み合っています。しばらくお待ちください / Busy, retrying shortly";

/**
 * Calls the API. Resolves to the parsed JSON (or null for 204); rejects with ApiError carrying
 * the server's {"error": {"code", "message"}}, or status 0 when the server cannot be reached.
 * A 429 (or 503) with `Retry-After` sets `retryAfter` on the error; after a 429, requests without a
 * token fail at once with a 429 until that time has passed, without reaching the server.
 */
export async function api(method, path, { token, body, headers = {} } = {}) {
  if (!token && coolDownLeft() > 0) {
    throw new ApiError(429, "rate_limited", BUSY, Math.ceil(coolDownLeft() / 1000));
  }
  const h = { ...headers };
  if (token) h["Authorization"] = `Bearer ${token}`;
  if (body !== undefined) h["Content-Type"] = "application/json";
  let res;
  try {
    res = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    throw new ApiError(0, "network", "サーバーに接続できません / cannot reach the server");
  }
  if (res.status === 204) return null;
  const data = await res.json().catch(() => null);
  if (!res.ok) {
    const err = data?.error || {};
    let retryAfter = 0;
    if (res.status === 429 || res.status === 503) retryAfter = parseRetryAfter(res.headers.get("Retry-After"));
    if (res.status === 429) {
      retryAfter ||= 1;
      if (!token) publicCoolUntil = Math.max(publicCoolUntil, Date.now() + retryAfter * 1000);
    }
    throw new ApiError(res.status, err.code || "error", err.message || res.statusText, retryAfter, err);
  }
  return data;
}

/**
 * Waits between reconnection attempts: `min` doubling up to `max`, each wait drawn from the upper
 * half of its step ("equal jitter"), so clients dropped together (a restart) spread out again.
 */
export class Backoff {
  constructor(min = 1000, max = 60000) {
    this.min = min;
    this.max = max;
    this.step = 0;
  }

  /** The next wait in ms; `atLeast` skips the first steps (the server asked us to come back later). */
  next(atLeast = 0) {
    this.step = Math.max(this.step, atLeast);
    const d = Math.min(this.max, this.min * 2 ** this.step);
    if (d < this.max) this.step += 1;
    return d / 2 + Math.random() * (d / 2);
  }

  reset() {
    this.step = 0;
  }
}

/** Close codes after which the server wants us back later, not at once: 1001 going away (shutdown), 1013 try again later. */
export function closedForLater(code) {
  return code === 1001 || code === 1013;
}

/** A socket that has not opened after this long is given up (a proxy holding the upgrade). */
export const OPEN_TIMEOUT_MS = 10000;
/** A connection that stayed up this long was healthy: the next drop starts the backoff over. */
export const STABLE_MS = 30000;

/**
 * Follows a site's live feed: calls onSnapshot(board) on every snapshot and onEvent(event, board)
 * for every event in order. Detects seq gaps and asks for a resync; calls onStatus(true|false)
 * when the connection comes and goes, and when the server says the site's event log is away or
 * back (`{"type": "status"}`). Never polls.
 *
 * Reconnects after any close (1001 shutdown, 1013 stalled, network loss) with a jittered backoff
 * from 1 s doubling to `maxDelay` (a few screens per site: they may come back soon), starting over
 * only after a connection that lasted; every new connection begins with a fresh snapshot, and
 * events before it are not applied.
 */
export class LiveFeed {
  constructor(site, { onSnapshot, onEvent, onStatus, maxDelay = 15000 } = {}) {
    this.site = site;
    this.onSnapshot = onSnapshot || (() => {});
    this.onEvent = onEvent || (() => {});
    this.onStatus = onStatus || (() => {});
    this.seq = null;
    this.backoff = new Backoff(1000, maxDelay);
    this.timer = null;
    this.ws = null;
    this.closed = false;
    // Back on the network: try now rather than at the end of a long wait.
    this.retryNow = () => {
      if (this.closed || this.ws) return;
      clearTimeout(this.timer);
      this.connect();
    };
    addEventListener("online", this.retryNow);
    this.connect();
  }

  connect() {
    this.timer = null;
    const proto = location.protocol === "https:" ? "wss" : "ws";
    let ws;
    try {
      ws = new WebSocket(`${proto}://${location.host}/api/v1/sites/${encodeURIComponent(this.site)}/live`);
    } catch {
      this.retryLater(1006, null);
      return;
    }
    this.ws = ws;
    let liveSince = null; // when the first snapshot arrived
    const openTimer = setTimeout(() => { if (ws.readyState === WebSocket.CONNECTING) ws.close(); }, OPEN_TIMEOUT_MS);
    ws.onopen = () => clearTimeout(openTimer);
    ws.onmessage = (m) => {
      if (this.ws !== ws) return;
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      if (msg.type === "snapshot") {
        liveSince ??= Date.now();
        this.seq = msg.seq;
        this.onStatus(true);
        this.onSnapshot(msg.board);
      } else if (msg.type === "event") {
        if (this.seq === null || msg.seq !== this.seq + 1) {
          // A gap (or an event before any snapshot): ask for a fresh snapshot, skip until then.
          this.seq = null;
          ws.send(JSON.stringify({ type: "resync" }));
          return;
        }
        this.seq = msg.seq;
        this.onEvent(msg.event, msg.board);
      } else if (msg.type === "status") {
        // The site's event log is away (or back): keep the board, show the reconnecting mark.
        this.onStatus(msg.log === "available");
      }
    };
    ws.onclose = (ev) => {
      clearTimeout(openTimer);
      if (this.ws !== ws) return;
      this.ws = null;
      this.seq = null;
      this.onStatus(false);
      this.retryLater(ev.code, liveSince);
    };
    ws.onerror = () => ws.close();
  }

  retryLater(code, liveSince) {
    if (this.closed) return;
    if (liveSince !== null && Date.now() - liveSince >= STABLE_MS) this.backoff.reset();
    const wait = this.backoff.next(closedForLater(code) ? 2 : 0);
    this.timer = setTimeout(() => this.connect(), wait);
  }

  close() {
    this.closed = true;
    clearTimeout(this.timer);
    removeEventListener("online", this.retryNow);
    const ws = this.ws;
    this.ws = null;
    ws?.close();
  }
}

/**
 * Follows a site's board: reads it once at once (the feed's first snapshot may take a moment),
 * then follows the live feed. Calls onBoard(board, event) for each newer board (`event` is
 * undefined for snapshots) and onStatus(up) when the feed comes and goes. Returns the LiveFeed.
 */
export function followBoard(site, { onBoard, onStatus } = {}) {
  let live = false;
  api("GET", `/api/v1/sites/${encodeURIComponent(site)}/board`)
    .then((b) => { if (!live) onBoard(b); })
    .catch(() => {});
  return new LiveFeed(site, {
    onSnapshot: (b) => { live = true; onBoard(b); },
    onEvent: (e, b) => { live = true; onBoard(b, e); },
    onStatus,
  });
}

/** Loads the site's catalog (names, queues, counters, screen settings). */
export async function loadCatalog(site) {
  return api("GET", `/api/v1/sites/${encodeURIComponent(site)}/catalog`);
}

/**
 * Stores a token given once in the address as `#token=…` under `key`, and removes it from the
 * address bar (and so from the history). True when there was one.
 */
export function takeTokenFromAddress(key) {
  const m = /^#token=(.+)$/.exec(location.hash);
  if (!m) return false;
  storeToken(key, decodeURIComponent(m[1]));
  history.replaceState(null, "", location.pathname + location.search);
  return true;
}

/** A token kept on this device (counter console, floor board), asked for once. */
export function storedToken(key) {
  return localStorage.getItem(`madoguchi.${key}`) || "";
}
export function storeToken(key, token) {
  if (token) localStorage.setItem(`madoguchi.${key}`, token);
  else localStorage.removeItem(`madoguchi.${key}`);
}

/**
 * A token kept on this device under `key`: asked for once, or given once as `#token=…` in the
 * address, which is stored at once and removed from the address. `onAddress()` runs when a token
 * arrives in the address later (the address edited by hand).
 */
export class DeviceToken {
  constructor(key, { onAddress } = {}) {
    this.key = key;
    takeTokenFromAddress(key);
    if (onAddress) addEventListener("hashchange", () => { if (takeTokenFromAddress(key)) onAddress(); });
  }

  /** The token, or "" when this device has none. */
  get value() {
    return storedToken(this.key);
  }

  save(token) {
    storeToken(this.key, token);
  }

  clear() {
    storeToken(this.key, "");
  }
}

/**
 * The frame shared by the staff consoles (counter console, floor board): the device token with
 * its sign-in card (`#token-form`), the "log out" (`#logout`) and "enter the token again"
 * (`[data-relogin]`) links, the live mark (`#conn`), the #message line and a card for a page that
 * could not load, with a reload button (`[data-reload]`). `onToken()` runs whenever the token is
 * saved, given in the address or removed.
 */
export class ConsoleShell {
  /** `lead`: {ja, en}, what the token is asked for. */
  constructor(key, { lead, onToken }) {
    this.lead = lead;
    this.token = new DeviceToken(key, { onAddress: onToken });
    document.addEventListener("click", (ev) => {
      const a = ev.target.closest?.("a");
      if (a && (a.id === "logout" || a.hasAttribute("data-relogin"))) {
        ev.preventDefault();
        this.token.clear();
        say("", "");
        onToken();
        return;
      }
      if (ev.target.closest?.("button[data-reload]")) location.reload();
    });
    document.addEventListener("submit", (ev) => {
      if (ev.target.id !== "token-form") return;
      ev.preventDefault();
      const v = (document.getElementById("token")?.value || "").trim();
      if (!v) { say("error", `トークンを入力してください <span class="en">Please enter the token</span>`); return; }
      this.token.save(v);
      say("", "");
      onToken();
    });
  }

  /** The token, or "" when this device has none. */
  get value() {
    return this.token.value;
  }

  /** Shows the sign-in card in `main` when this device has no token; true when it did. */
  signIn(main) {
    const logout = document.getElementById("logout");
    if (logout) logout.hidden = !this.value;
    if (this.value) return false;
    main.innerHTML = `<div class="card center-card">
      <h2>トークンの入力 <span class="en">Sign in this device</span></h2>
      <p class="muted">${esc(this.lead.ja)}<br><span class="en">${esc(this.lead.en)}</span></p>
      <form id="token-form" autocomplete="off">
        <div class="field"><label for="token">トークン <span class="en">Token</span></label>
          <input id="token" type="password" autocomplete="off" spellcheck="false"></div>
        <button type="submit" class="btn" id="save-token">保存 <span class="en">Save</span></button>
      </form></div>`;
    setTimeout(() => document.getElementById("token")?.focus(), 0);
    return true;
  }

  /** The live mark in the header. */
  live(up) {
    const c = document.getElementById("conn");
    if (!c) return;
    c.textContent = up ? "ライブ / live" : "再接続中… / reconnecting…";
    c.classList.toggle("down", !up);
  }

  /** Follows the site's board (see followBoard) with the live mark. */
  follow(site, onBoard) {
    return followBoard(site, { onBoard, onStatus: (up) => this.live(up) });
  }

  /** What `main` shows when the page cannot load what it needs (the catalog). */
  failed(main, e) {
    main.innerHTML = `<div class="card center-card"><h2>読み込めませんでした <span class="en">Could not load</span></h2>
      <p>${errorText(e)}</p><button type="button" class="btn" data-reload>再読み込み <span class="en">Reload</span></button></div>`;
  }
}

/** Shows a message in the page's #message element; `kind` is "error" or "info". */
export function say(kind, html) {
  const m = document.getElementById("message");
  if (!m) return;
  m.dataset.kind = kind;
  m.setAttribute("role", kind === "error" ? "alert" : "status");
  m.innerHTML = html;
}

/** An API error as staff should read it: what it means, then the server's own message. */
export function errorText(e) {
  if (!(e instanceof ApiError)) return esc(String(e?.message || e));
  const pre = {
    0: "", 400: "要求が正しくありません / Bad request", 401: "トークンが無効です / Unknown token",
    403: "この操作は許可されていません / Not allowed", 404: "見つかりません / Not found",
    409: "現在の状態ではできません / Not possible now", 422: "受け付けられません / Not accepted",
    429: BUSY,
    503: "一時的に利用できません。もう一度お試しください / Unavailable, please retry",
  }[e.status] ?? `エラー / Error ${e.status}`;
  const tail = e.status === 401 ? ` <a href="#" data-relogin>トークンを入力し直す / Enter the token again</a>` : "";
  return `${pre ? `<b>${esc(pre)}</b> — ` : ""}${esc(e.message)} <span class="en">(${esc(e.code)})</span>${tail}`;
}
