// Shared by every madoguchi screen: the live feed, API calls, small formatting helpers.
// Plain ES module, no build step.

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
export function waitText(seconds, lang = "ja") {
  const m = Math.ceil((seconds || 0) / 60);
  if (m <= 0) return lang === "ja" ? "すぐ" : "soon";
  return lang === "ja" ? `約${m}分` : `about ${m} min`;
}

/** Local time "10:05" in the site's time zone. */
export function clock(t, timeZone) {
  return new Date(t).toLocaleTimeString("ja-JP", { hour: "2-digit", minute: "2-digit", timeZone });
}

/** Names by id from a catalog list: name(catalog.queues, "onestop") → {ja, en}. */
export function nameOf(list, id) {
  const x = (list || []).find((e) => (e.id ?? e.code) === id);
  return x ? x.name : { ja: String(id), en: String(id) };
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/**
 * Calls the API. Resolves to the parsed JSON (or null for 204); rejects with ApiError carrying
 * the server's {"error": {"code", "message"}}, or status 0 when the server cannot be reached.
 */
export async function api(method, path, { token, body, headers = {} } = {}) {
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
    throw new ApiError(res.status, err.code || "error", err.message || res.statusText);
  }
  return data;
}

/**
 * Follows a site's live feed: calls onSnapshot(board) on every snapshot and onEvent(event, board)
 * for every event in order. Detects seq gaps and asks for a resync; reconnects with backoff;
 * calls onStatus(true|false) when the connection comes and goes. Never polls.
 */
export class LiveFeed {
  constructor(site, { onSnapshot, onEvent, onStatus } = {}) {
    this.site = site;
    this.onSnapshot = onSnapshot || (() => {});
    this.onEvent = onEvent || (() => {});
    this.onStatus = onStatus || (() => {});
    this.seq = null;
    this.backoff = 500;
    this.closed = false;
    this.connect();
  }

  connect() {
    const proto = location.protocol === "https:" ? "wss" : "ws";
    const ws = new WebSocket(`${proto}://${location.host}/api/v1/sites/${encodeURIComponent(this.site)}/live`);
    this.ws = ws;
    ws.onopen = () => {
      this.backoff = 500;
    };
    ws.onmessage = (m) => {
      let msg;
      try {
        msg = JSON.parse(m.data);
      } catch {
        return;
      }
      if (msg.type === "snapshot") {
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
      }
    };
    ws.onclose = () => {
      this.seq = null;
      this.onStatus(false);
      if (this.closed) return;
      const wait = this.backoff * (0.8 + Math.random() * 0.4);
      this.backoff = Math.min(this.backoff * 2, 10000);
      setTimeout(() => this.connect(), wait);
    };
    ws.onerror = () => ws.close();
  }

  close() {
    this.closed = true;
    this.ws?.close();
  }
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
    503: "一時的に利用できません。もう一度お試しください / Unavailable, please retry",
  }[e.status] ?? `エラー / Error ${e.status}`;
  const tail = e.status === 401 ? ` <a href="#" data-relogin>トークンを入力し直す / Enter the token again</a>` : "";
  return `${pre ? `<b>${esc(pre)}</b> — ` : ""}${esc(e.message)} <span class="en">(${esc(e.code)})</span>${tail}`;
}
