// The phone page (/t/{token}, the ticket's QR code): position and estimate live over the ticket
// channel, a full-screen notice when called, the satisfaction question after. No token but the
// ticket's own, which only this address carries (served with Referrer-Policy: no-referrer).
import { api, loadCatalog, esc, waitText, clock, nameOf, siteFromPath, Backoff, retryAfterMs, jittered, sleep,
  closedForLater, OPEN_TIMEOUT_MS, STABLE_MS } from "/assets/common.js";

// The token is the last path segment of /t/{token} (siteFromPath returns exactly that).
const token = siteFromPath();
const TICKET = `/api/v1/tickets/${encodeURIComponent(token)}`;
const el = (id) => document.getElementById(id);

/** While the ticket channel cannot be opened, the ticket is read this often (plus jitter). */
const POLL_MS = 20000;
/** Channel attempts in a row that bring nothing before polling starts. */
const POLL_AFTER_FAILURES = 3;
/** Tries of a resident's own request (cancel, satisfaction) that meet a 429. */
const SEND_TRIES = 4;
const BUSY = { ja: "混み合っています。しばらくお待ちください", en: "Busy, retrying shortly" };

const STATUS = {
  waiting:   { ja: "待合中", en: "Waiting" },
  called:    { ja: "呼出中", en: "Called" },
  serving:   { ja: "対応中", en: "Being served" },
  done:      { ja: "完了",   en: "Completed" },
  no_show:   { ja: "不在",   en: "Missed" },
  cancelled: { ja: "取消",   en: "Cancelled" },
};
const SCORES = [
  { n: 5, ja: "満足",     en: "Very satisfied" },
  { n: 4, ja: "やや満足", en: "Satisfied" },
  { n: 3, ja: "ふつう",   en: "Neutral" },
  { n: 2, ja: "やや不満", en: "Dissatisfied" },
  { n: 1, ja: "不満",     en: "Very dissatisfied" },
];
const FINAL = new Set(["done", "no_show", "cancelled"]);

let ticket = null;
let catalog = null;
let over = false;          // "not found" or "gone" is shown: nothing more to follow
let overlayFor = null;     // the call the overlay was last opened for ("counter")
let surveyError = "";
let sending = false;
let cancelError = "";

function counterName(id) { return nameOf(catalog?.counters, id); }
function tz() { return catalog?.site?.timezone || "Asia/Tokyo"; }

function setStatus(s) { document.body.dataset.status = s; }

// ---- the connection mark ---------------------------------------------------------------------------
// `link`: "live" (the ticket channel delivers), "poll" (reading by GET instead), "down" (neither works),
// "idle" (nothing to follow). After a 429 a calm busy notice shows until its Retry-After has passed.
let link = "idle";
let busyUntil = 0;
let busyTimer = null;
function setLink(state) {
  link = state;
  showLink();
}
function busyFor(ms) {
  busyUntil = Math.max(busyUntil, Date.now() + ms);
  clearTimeout(busyTimer);
  busyTimer = setTimeout(showLink, busyUntil - Date.now() + 50);
  showLink();
}
function showLink() {
  const busy = busyUntil > Date.now();
  document.body.dataset.live = link;
  document.body.dataset.busy = busy ? "1" : "";
  // Before the first answer the page itself says what is going on.
  const mark = busy ? (ticket ? "busy" : "") : (link === "down" ? "down" : "");
  const c = el("conn");
  c.classList.toggle("show", mark !== "");
  c.classList.toggle("busy", mark === "busy");
  c.textContent = mark === "busy" ? `${BUSY.ja} / ${BUSY.en}` : "再接続中… / Reconnecting…";
}

function vibrate() {
  try { if (typeof navigator.vibrate === "function") navigator.vibrate([300, 150, 300]); } catch { /* not supported */ }
}

// ---- pages ---------------------------------------------------------------------------------------
/** `kind`: "not_found" (never known), "gone" (known, but the business day has ended). */
function notFound(kind = "not_found") {
  over = true;
  ticket = null;
  stopFollowing();
  hideOverlay();
  setStatus(kind);
  const head = kind === "gone"
    ? `<div class="big">本日の受付は<wbr>終了しました</div><span class="en">Today's service has ended</span>`
    : `<div class="big">この受付票は<wbr>見つかりません</div><span class="en">Ticket not found</span>`;
  document.title = kind === "gone" ? "本日の受付は終了しました / Service has ended" : "受付票が見つかりません / Ticket not found";
  el("main").innerHTML = `<div class="card center">
      ${head}
      <p class="hint">受付票は発行した日のみ有効です。お困りの際は、お近くの係員にお声がけください。<br>
      <span class="en">A ticket is valid on the day it was issued only. If you need help, please ask a member of staff.</span></p>
    </div>`;
}

function render() {
  const t = ticket;
  if (!t) return;
  const site = t.site?.name || catalog?.site?.name || { ja: "", en: "" };
  el("site-ja").textContent = site.ja || "受付票";
  el("site-en").textContent = site.en || "Your ticket";
  document.title = t.status === "called"
    ? `【呼出中】${t.number}番 — ${site.ja || ""}`
    : `受付番号 ${t.number} — ${site.ja || ""}`;
  setStatus(t.status);

  const st = STATUS[t.status] || { ja: t.status, en: t.status };
  const queue = nameOf(catalog?.queues, t.queue);
  const ctr = t.counter ? counterName(t.counter) : null;
  let html = `<section class="card ticket${FINAL.has(t.status) ? " compact" : ""}">
      <div class="label">受付番号<span class="en">Your number</span></div>
      <div class="number num">${esc(t.number)}</div>
      <div class="status st-${esc(t.status)}">${esc(st.ja)}<span class="en">${esc(st.en)}</span></div>
    </section>`;

  if (t.status === "waiting") {
    const pos = Number(t.position) || 0;
    const ahead = Math.max(0, pos - 1);
    const line = pos === 1
      ? `<div class="fact next"><div class="k">順番<span class="en">Your turn</span></div>
           <div class="val"><div class="v">次にお呼びします</div><div class="ven">You are next</div></div></div>`
      : `<div class="fact"><div class="k">順番<span class="en">In line</span></div>
           <div class="val"><div class="v">あと${ahead}<small>人</small></div><div class="ven">${ahead} ahead</div></div></div>`;
    html += `<section class="card"><div class="line" data-position="${pos}">${line}
        <div class="fact"><div class="k">目安待ち時間<span class="en">Estimated wait</span></div>
          <div class="val"><div class="v">${esc(waitText(t.estimated_wait_s, "ja"))}</div><div class="ven">${esc(waitText(t.estimated_wait_s, "en"))}</div></div></div>
      </div>
      <p class="hint">番号が呼ばれると、この画面でお知らせします。<span class="en">This page tells you when your number is called.</span></p>
    </section>`;
  } else if (t.status === "called") {
    html += `<section class="card"><div class="msg go">${esc(ctr?.ja || "窓口")}へお越しください
        <span class="en">Please come to ${esc(ctr?.en || "the counter")}</span></div></section>`;
  } else if (t.status === "serving") {
    html += `<section class="card"><div class="msg ok">${esc(ctr?.ja || "窓口")}で対応中です
        <span class="en">You are being served at ${esc(ctr?.en || "the counter")}</span></div></section>`;
  } else if (t.status === "done") {
    html += surveyHtml(t);
  } else if (t.status === "no_show") {
    html += `<section class="card"><div class="msg">お呼びしましたが、いらっしゃいませんでした。お近くの係員にお声がけください。
        <span class="en">We called your number but could not find you. Please ask a member of staff.</span></div></section>`;
  } else if (t.status === "cancelled") {
    html += `<section class="card"><div class="msg">この受付は取り消されました。
        <span class="en">This ticket has been cancelled.</span></div></section>`;
  }

  const procs = (t.procedures || []).map((code) => {
    const n = nameOf(catalog?.procedures, code);
    return `<li>${esc(n.ja)}<span class="en">${esc(n.en)}</span></li>`;
  }).join("");
  let issued = "";
  try { issued = t.issued_at ? clock(t.issued_at, tz()) : ""; } catch { issued = ""; }
  html += `<section class="card"><dl>
      <dt>窓口 <span class="en">Counter</span></dt><dd>${esc(queue.ja)}<span class="en">${esc(queue.en)}</span></dd>
      ${procs ? `<dt>本日の手続 <span class="en">Procedures today</span></dt><dd><ul class="procs">${procs}</ul></dd>` : ""}
      ${issued ? `<dt>受付時刻 <span class="en">Issued at</span></dt><dd class="num">${esc(issued)}</dd>` : ""}
    </dl></section>`;

  if (t.status === "waiting") {
    html += `<div class="actions"><button type="button" class="linklike" id="cancel" data-action="cancel">受付を取り消す <span class="en">/ Cancel my ticket</span></button>
      ${cancelError ? `<div class="error" role="alert">${esc(cancelError)}</div>` : ""}</div>`;
  }
  html += `<p class="foot">${FINAL.has(t.status) ? "" : "この画面は自動で更新されます。<br><span class=\"en\">This page updates by itself.</span><br>"}
    番号のみを表示しています / Numbers only, no personal data</p>`;

  el("main").innerHTML = html;
  el("cancel")?.addEventListener("click", onCancel);
  for (const b of document.querySelectorAll("[data-score]")) b.addEventListener("click", () => rate(Number(b.dataset.score)));
}

function surveyHtml(t) {
  if (t.satisfaction != null) {
    return `<section class="card thanks" data-rated="${esc(t.satisfaction)}"><div class="big">ご協力<wbr>ありがとう<wbr>ございました</div>
      <span class="en">Thank you</span></section>`;
  }
  return `<section class="card survey"><h2>本日の窓口の対応はいかがでしたか？<span class="en">How satisfied were you today?</span></h2>
    <div class="scores" role="group" aria-label="満足度 / Satisfaction">
      ${SCORES.map((s) => `<button type="button" class="s${s.n}" data-score="${s.n}" ${sending ? "disabled" : ""}>
        <span class="face" aria-hidden="true">${s.n}</span><span class="t"><span class="ja">${esc(s.ja)}</span><span class="en">${esc(s.en)}</span></span></button>`).join("")}
    </div>
    ${surveyError ? `<div class="error" role="alert">${esc(surveyError)}</div>` : ""}
  </section>`;
}

// ---- the call notice ------------------------------------------------------------------------------
function showOverlay() {
  const t = ticket;
  const ctr = counterName(t.counter);
  const ov = el("overlay");
  ov.innerHTML = `<div class="bell" aria-hidden="true"><svg viewBox="0 0 24 24"><path d="M12 22a2.5 2.5 0 0 0 2.45-2h-4.9A2.5 2.5 0 0 0 12 22zm7-6V11a7 7 0 0 0-5.5-6.84V3.5a1.5 1.5 0 0 0-3 0v.66A7 7 0 0 0 5 11v5l-2 2v1h18v-1z"/></svg></div>
    <div class="head" id="ov-head">呼出中です<span class="en">You are being called</span></div>
    <div class="onum num" data-number="${esc(t.number)}">${esc(t.number)}</div>
    <div class="octr" data-counter="${esc(t.counter || "")}"><span class="ja">${esc(ctr.ja)}</span><span class="en">${esc(ctr.en)}</span></div>
    <div class="ogo">窓口へお越しください<span class="en">Please come to the counter</span></div>
    <button type="button" class="close" id="ov-close" data-action="dismiss">閉じる<span class="en">Close</span></button>`;
  ov.hidden = false;
  el("ov-close").addEventListener("click", hideOverlay);
  el("ov-close").focus({ preventScroll: true });
}
function hideOverlay() {
  el("overlay").hidden = true;
}

// ---- data -------------------------------------------------------------------------------------------
function apply(next) {
  const prev = ticket;
  ticket = next;
  render();
  if (next.status === "called") {
    // `calls` grows with every call and recall, so a recall alerts again.
    const key = `${next.counter}/${next.calls ?? ""}`;
    if (!prev || prev.status !== "called" || overlayFor !== key) {
      overlayFor = key;
      showOverlay();
      if (prev) vibrate();
    } else if (!el("overlay").hidden) {
      showOverlay(); // refresh the counter name if the catalog arrived late
    }
  } else {
    overlayFor = null;
    hideOverlay();
  }
  if (FINAL.has(next.status)) stopFollowing();
}

/** A newer view of the ticket, from the channel, a read or a reply. */
function received(t) {
  if (over) return;
  apply(t);
  if (!catalog) ensureCatalog(t.site?.id);
}

let catalogLoading = null;
/** Loads names once; a failure leaves ids on screen and is retried with the next update. */
function ensureCatalog(site) {
  if (catalog || !site) return Promise.resolve();
  catalogLoading ??= loadCatalog(site)
    .then((c) => {
      catalog = c;
      if (ticket && !over) {
        render();
        if (!el("overlay").hidden) showOverlay();
      }
    })
    .catch(() => {})
    .finally(() => { catalogLoading = null; });
  return catalogLoading;
}

// ---- following the ticket ------------------------------------------------------------------------
// The ticket channel (GET /api/v1/tickets/{token}/live) sends the ticket on connect and whenever it
// changes. It is reopened after any close (1001 shutdown, 1013 too slow, network loss) with a jittered
// backoff from 1 s doubling to 60 s. An attempt that brings nothing is followed by one read (a 404 means
// the ticket is gone, a 429 says how long to wait); after a few such attempts in a row the ticket is
// also read every POLL_MS until the channel works again.
let following = false;
let ws = null;
let delivering = false;     // the open channel has sent the ticket: it is current without reading
let failures = 0;           // channel attempts in a row that brought nothing
let retryTimer = null;
const backoff = new Backoff(1000, 60000);

function follow() {
  if (following || over) return;
  following = true;
  addEventListener("online", retryNow);
  connect();
}

function stopFollowing() {
  following = false;
  removeEventListener("online", retryNow);
  stopPolling();
  clearTimeout(retryTimer);
  retryTimer = null;
  const s = ws;
  ws = null;
  delivering = false;
  s?.close();
  setLink("idle");
}

function connect() {
  retryTimer = null;
  if (!following || ws) return;
  const proto = location.protocol === "https:" ? "wss" : "ws";
  let sock;
  try {
    sock = new WebSocket(`${proto}://${location.host}${TICKET}/live`);
  } catch {
    channelLost(1006, null);
    return;
  }
  ws = sock;
  let since = null; // when the first message arrived
  const openTimer = setTimeout(() => { if (sock.readyState === WebSocket.CONNECTING) sock.close(); }, OPEN_TIMEOUT_MS);
  sock.onopen = () => clearTimeout(openTimer);
  sock.onmessage = (m) => {
    if (ws !== sock) return;
    let msg;
    try { msg = JSON.parse(m.data); } catch { return; }
    if (msg.type === "ticket" && msg.ticket) {
      if (since === null) {
        since = Date.now();
        failures = 0;
        delivering = true;
        stopPolling();
        setLink("live");
      }
      received(msg.ticket);
    } else if (msg.type === "gone") {
      notFound("gone");
    } else if (msg.type === "status" && since !== null) {
      // The site's event log is away (or back): the ticket stays as shown, with the mark.
      setLink(msg.log === "available" ? "live" : "down");
    }
  };
  sock.onerror = () => sock.close();
  sock.onclose = (ev) => {
    clearTimeout(openTimer);
    if (ws !== sock) return;
    ws = null;
    delivering = false;
    channelLost(ev.code, since);
  };
}

function channelLost(code, since) {
  if (!following) return;
  if (since === null) failures += 1;
  else if (Date.now() - since >= STABLE_MS) backoff.reset();
  if (!polling) setLink("down");
  if (failures >= POLL_AFTER_FAILURES) startPolling();
  else if (since === null) read();
  const wait = Math.max(backoff.next(closedForLater(code) ? 2 : 0), busyUntil - Date.now());
  retryTimer = setTimeout(connect, wait);
}

/** Back on the network, or back in front of the resident: try the channel now, not after the wait. */
function retryNow() {
  if (!following || ws) return;
  clearTimeout(retryTimer);
  connect();
}

let polling = false;
let pollTimer = null;
function startPolling() {
  if (polling || !following) return;
  polling = true;
  poll();
}
function stopPolling() {
  polling = false;
  clearTimeout(pollTimer);
  pollTimer = null;
}
async function poll() {
  clearTimeout(pollTimer);
  const wait = await read();
  if (polling) pollTimer = setTimeout(poll, Math.max(jittered(POLL_MS), jittered(wait)));
}

let reading = null;
/** Reads the ticket once (one request at a time); resolves to the ms a 429 asks to wait, else 0. */
function read() {
  reading ??= (async () => {
    try {
      const data = await api("GET", TICKET);
      // An answer older than what the channel delivers meanwhile must not win.
      if (data?.ticket && !delivering) received(data.ticket);
      if (polling) setLink("poll");
      return 0;
    } catch (e) {
      if (e?.status === 404) { notFound(ticket ? "gone" : "not_found"); return 0; }
      const wait = retryAfterMs(e);
      if (wait) busyFor(wait);
      else if (polling) setLink("down");
      return wait;
    } finally {
      reading = null;
    }
  })();
  return reading;
}

/** A resident's own request: after a 429 it waits out Retry-After, with the busy notice, and tries again. */
async function send(path, body) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await api("POST", path, body === undefined ? {} : { body });
    } catch (e) {
      const wait = retryAfterMs(e);
      if (!wait || attempt >= SEND_TRIES) throw e;
      busyFor(wait);
      await sleep(jittered(wait));
    }
  }
}

async function onCancel() {
  cancelError = "";
  let ok = false;
  try {
    ok = window.confirm("受付を取り消しますか？\nこの番号ではお呼びしなくなります。\n\nCancel your ticket? Your number will no longer be called.");
  } catch { ok = false; }
  if (!ok) return;
  try {
    const data = await send(`${TICKET}/cancel`);
    if (data?.ticket?.status && data.ticket.number && !over) apply({ ...ticket, ...data.ticket });
  } catch (e) {
    cancelError = e?.status === 409
      ? "取り消せませんでした（すでにお呼びしています） / Could not cancel: your number has already been called."
      : e?.status === 429
        ? "混み合っています。少し待ってからもう一度お試しください / Busy. Please try again in a moment."
        : "取り消せませんでした。もう一度お試しください / Could not cancel. Please try again.";
    if (!over) render();
  }
  if (following && !delivering) read();
}

async function rate(score) {
  if (sending || !ticket) return;
  sending = true;
  surveyError = "";
  render();
  try {
    const data = await send(`${TICKET}/satisfaction`, { score });
    ticket = { ...ticket, ...(data?.ticket || {}) };
    if (ticket.satisfaction == null) ticket.satisfaction = score;
  } catch (e) {
    if (e?.status === 409) ticket = { ...ticket, satisfaction: ticket.satisfaction ?? score }; // already answered
    else if (e?.status === 429) surveyError = "混み合っています。少し待ってからもう一度お試しください / Busy. Please try again in a moment.";
    else surveyError = "送信できませんでした。もう一度お試しください / Could not send. Please try again.";
  } finally {
    sending = false;
    if (!over) render();
  }
}

async function start() {
  if (!token) { notFound(); return; }
  const retry = new Backoff(1000, 15000);
  let first = null;
  for (;;) {
    try {
      first = await api("GET", TICKET);
      break;
    } catch (e) {
      if (e?.status === 404 || e?.status === 400) { notFound(); return; }
      const wait = retryAfterMs(e);
      if (e?.status === 429) {
        el("main").innerHTML = `<div class="card center"><div class="big">${esc(BUSY.ja)}</div>
          <span class="en">${esc(BUSY.en)}</span></div>`;
        busyFor(wait);
      } else {
        el("main").innerHTML = `<div class="card center"><div class="big">接続できません。再試行しています…</div>
          <span class="en">Cannot reach the server. Retrying…</span></div>`;
        setLink("down");
      }
      // Never sooner than Retry-After says.
      await sleep(Math.max(retry.next(), jittered(wait)));
    }
  }
  setLink("live");
  const t = first.ticket;
  await ensureCatalog(t.site?.id);
  apply(t);
  if (!FINAL.has(t.status)) follow();
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState !== "visible" || !following) return;
    retryNow();
    if (!delivering) read();
  });
}

start();
