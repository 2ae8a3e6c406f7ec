// The phone page (/t/{token}, the ticket's QR code): position and estimate live over the ticket
// channel, a full-screen notice when called, the satisfaction question after; where the site offers
// it, a near-turn notice (順番が近づいたらお知らせ) by e-mail or a code for the city's LINE or SMS
// gateway. No token but the ticket's own, which only this address carries (served with
// Referrer-Policy: no-referrer).
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

// The near-turn notice box (#notice-box): kept apart from the rest of the page, which is drawn again
// on every update, so an address being typed is not lost when the line moves.
let noticeBusy = false;    // a request of the box is under way
let noticeError = "";      // "日本語 / English", under the box's controls
let noticeEmail = "";      // the address typed, until it is taken
let noticeKey = null;      // what the box shows now (drawn again only when this changes)

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
  const top = html;
  html = "";

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

  const parts = frame();
  parts.top.innerHTML = top;
  parts.rest.innerHTML = html;
  renderNotice();
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

// ---- the near-turn notice ---------------------------------------------------------------------
// While the ticket waits and the site offers it (`notices`: places, minutes, channels), the resident
// may ask to be told once when the turn is near: by e-mail (the address is kept aside by the server
// and deleted after the notice or when the visit ends), or with a code sent to the city's LINE or
// SMS gateway. Once asked (`notice`), the box says so and can take it back (DELETE).

/** The page's three parts: the ticket (drawn again on every update), the notice box (drawn
 *  only when what it shows changes), the details below. Made again after `main` was replaced. */
function frame() {
  const m = el("main");
  let box = el("notice-box");
  if (!box || box.parentNode !== m) {
    m.innerHTML = `<div id="ticket-top"></div>
      <section class="card notice-box" id="notice-box" aria-labelledby="notice-head" hidden></section>
      <div id="ticket-rest"></div>`;
    box = el("notice-box");
    box.addEventListener("submit", (ev) => { ev.preventDefault(); askNotice("email"); });
    box.addEventListener("input", (ev) => {
      if (ev.target.id !== "notice-email") return;
      noticeEmail = ev.target.value;
      // Being corrected: the error goes, without drawing the box again under the typing.
      if (noticeError) {
        noticeError = "";
        el("notice-error")?.remove();
        noticeKey = noticeKeyOf(noticeOffer(ticket));
      }
    });
    box.addEventListener("click", (ev) => {
      const b = ev.target.closest("button[data-notice]");
      if (!b || b.disabled) return;
      if (b.dataset.notice === "link") askNotice("link");
      else if (b.dataset.notice === "withdraw") withdrawNotice();
    });
    noticeKey = null;
  }
  return { top: el("ticket-top"), box, rest: el("ticket-rest") };
}

/** What the box is about: null when it is hidden. */
function noticeOffer(t) {
  if (!t || t.status !== "waiting") return null;
  const channels = (t.notices?.channels || []).filter((c) => c === "email" || c === "link");
  // A ticket called once (and back in line) is never told: nothing to offer it.
  if (!t.notice && (!channels.length || Number(t.calls) > 0)) return null;
  return { rule: t.notices || {}, channels, notice: t.notice || null };
}

/** 「あと 3 番目または約 10 分で1回だけお知らせします」 as {ja, en}; a figure of 0 is left out. */
function ruleText(rule) {
  const p = Number(rule.places) || 0, m = Number(rule.minutes) || 0;
  const places = `${p} ${p === 1 ? "place" : "places"}`;
  if (p && m) {
    return { ja: `あと ${p} 番目または約 ${m} 分で1回だけお知らせします`,
             en: `Once, when you are ${places} or about ${m} min from your call` };
  }
  if (m) return { ja: `約 ${m} 分でお呼びする頃に1回だけお知らせします`, en: `Once, when you are about ${m} min from your call` };
  return { ja: `あと ${p} 番目で1回だけお知らせします`, en: `Once, when you are ${places} from your call` };
}

const PRIVACY = `<p class="hint notice-privacy" id="notice-privacy">メールアドレスはお知らせ後・ご用件終了時に削除します
  <span class="en">Your address is deleted after the notice or when your visit ends</span></p>`;

function noticeHtml(o) {
  const n = o.notice;
  const busy = noticeBusy ? "disabled aria-busy=\"true\"" : "";
  let html = `<h2 id="notice-head">順番が近づいたらお知らせ<span class="en">Tell me when my turn is near</span></h2>`;
  const rule = ruleText(o.rule);
  if (n) {
    const link = n.channel === "link";
    const how = link ? { ja: "LINE・SMSでお知らせします", en: "By LINE or SMS" } : { ja: "メールでお知らせします", en: "By e-mail" };
    html += n.sent
      ? `<div class="notice-state sent" id="notice-state">お知らせしました<span class="en">Notice sent</span></div>`
      : `<div class="notice-state" id="notice-state">お知らせを受け付けました<span class="en">You will be told</span></div>`;
    html += `<p class="hint notice-how">${esc(how.ja)}<span class="en">${esc(how.en)}</span></p>`;
    if (link && n.link_code) {
      html += `<div class="notice-code num" id="notice-code" data-link-code="${esc(n.link_code)}"
          aria-label="${esc(`お知らせ番号 / Code ${[...n.link_code].join(" ")}`)}">${esc(n.link_code)}</div>`;
      if (!n.sent) {
        html += `<p class="notice-send" id="notice-send">この番号を市の LINE 公式アカウント または SMS に送ってください
          <span class="en">Send this code to the city's LINE account or SMS number</span></p>`;
      }
    }
    if (!n.sent) {
      html += `<p class="hint">${esc(rule.ja)}<span class="en">${esc(rule.en)}</span></p>
        <div class="notice-actions"><button type="button" class="notice-btn quiet" id="notice-withdraw" data-notice="withdraw" ${busy}>取りやめる<span class="en">Cancel</span></button></div>`;
    }
    if (n.channel === "email" && !n.sent) html += PRIVACY;
  } else {
    html += `<p class="hint notice-rule" id="notice-rule">${esc(rule.ja)}<span class="en">${esc(rule.en)}</span></p>`;
    if (o.channels.includes("email")) {
      html += `<form class="notice-form" id="notice-form" novalidate>
          <label for="notice-email">メールアドレス<span class="en">E-mail address</span></label>
          <input type="email" id="notice-email" name="email" autocomplete="email" inputmode="email" autocapitalize="off"
            spellcheck="false" maxlength="254" enterkeyhint="send" placeholder="name@example.jp" ${noticeBusy ? "disabled" : ""}>
          <button type="submit" class="notice-btn" id="notice-email-submit" ${busy}>メールで受け取る<span class="en">By e-mail</span></button>
        </form>`;
    }
    if (o.channels.includes("link")) {
      html += `<div class="notice-actions"><button type="button" class="notice-btn" id="notice-link" data-notice="link" ${busy}>LINE・SMSで受け取る<span class="en">By LINE or SMS</span></button></div>`;
    }
    if (o.channels.includes("email")) html += PRIVACY;
  }
  if (noticeError) html += `<div class="error" role="alert" id="notice-error">${esc(noticeError)}</div>`;
  return html;
}

/** What the box shows, as one string. */
function noticeKeyOf(o) {
  return o ? JSON.stringify([o.rule, o.channels, o.notice, noticeBusy, noticeError]) : "";
}

/** Draws the box again when what it shows has changed (never while nothing did: typing goes on). */
function renderNotice() {
  const box = el("notice-box");
  if (!box) return;
  const o = noticeOffer(over ? null : ticket);
  const key = noticeKeyOf(o);
  if (key === noticeKey) return;
  noticeKey = key;
  box.hidden = !o;
  box.dataset.state = !o ? "" : !o.notice ? "offer" : o.notice.sent ? "sent" : "asked";
  box.dataset.channel = o?.notice?.channel || "";
  if (!o) { box.innerHTML = ""; return; }
  const input = el("notice-email");
  const focused = input !== null && document.activeElement === input;
  box.innerHTML = noticeHtml(o);
  const again = el("notice-email");
  if (again) {
    again.value = noticeEmail;
    if (focused) again.focus({ preventScroll: true });
  }
}

function noticeErrorText(e) {
  if (e?.status === 429) return "混み合っています。少し待ってからもう一度お試しください / Busy. Please try again in a moment.";
  if (e?.status === 0) return "サーバーに接続できません。もう一度お試しください / Cannot reach the server. Please try again.";
  if (e?.status === 409 && e.code === "notice_sent") return "お知らせは送信済みです / The notice has been sent already.";
  if (e?.status === 409) return "すでにお呼びした番号のため、お知らせできません / Your number has been called already, so no notice can be set.";
  if (e?.status === 404 && e.code === "no_notices") return "この庁舎ではお知らせを行っていません / This office sends no notices.";
  // The server's own words ("メールアドレスを確認してください / give a valid e-mail address").
  if (e?.status === 422 && String(e.message || "").includes(" / ")) return e.message;
  return "受け付けられませんでした。もう一度お試しください / Could not set the notice. Please try again.";
}

async function askNotice(channel) {
  if (noticeBusy || !ticket || over) return;
  const body = { channel };
  if (channel === "email") {
    noticeEmail = (el("notice-email")?.value ?? noticeEmail).trim();
    if (!noticeEmail) {
      noticeError = "メールアドレスを入力してください / Please enter your e-mail address.";
      renderNotice();
      el("notice-email")?.focus();
      return;
    }
    body.email = noticeEmail;
  }
  noticeBusy = true;
  noticeError = "";
  renderNotice();
  let reply = null;
  try {
    reply = await send(`${TICKET}/notice`, body);
  } catch (e) {
    noticeError = noticeErrorText(e);
  }
  noticeBusy = false;
  if (over) return;
  if (reply?.ticket?.number) {
    noticeEmail = "";
    apply({ ...ticket, ...reply.ticket });
  } else {
    renderNotice();
    if (channel === "email" && noticeError) el("notice-email")?.focus();
  }
  if (following && !delivering) read();
}

async function withdrawNotice() {
  if (noticeBusy || !ticket || over) return;
  noticeBusy = true;
  noticeError = "";
  renderNotice();
  let ok = false;
  try {
    await send(`${TICKET}/notice`, undefined, "DELETE");
    ok = true;
  } catch (e) {
    noticeError = e?.status === 429 ? noticeErrorText(e)
      : "取りやめられませんでした。もう一度お試しください / Could not cancel the notice. Please try again.";
  }
  noticeBusy = false;
  if (over) return;
  if (ok) {
    const next = { ...ticket };
    delete next.notice;
    apply(next);
  } else {
    renderNotice();
  }
  if (following && !delivering) read();
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

/** A resident's own request (POST unless `method` says otherwise): after a 429 it waits out
 *  Retry-After, with the busy notice, and tries again. */
async function send(path, body, method = "POST") {
  for (let attempt = 1; ; attempt++) {
    try {
      return await api(method, path, body === undefined ? {} : { body });
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
