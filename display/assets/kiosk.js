// The dispenser kiosk (/screens/kiosk/{site}?dispenser=ID): life event → yes/no questions → the
// procedures the resident will be helped with → the number. Needs a dispenser token on the device.
// Residents with a booking (来庁予約, /book/{site}) check in instead: 「予約の方」 → the 8-character
// code (on-screen keys of the code's alphabet, or typed / scanned) → the number of the booked plan.
// Queues that take no tickets now (the board's `state`: `closing`, `closed`) are shown so: their
// life events disabled with the notice, the issue button disabled, and when none takes tickets a
// full-screen notice with the next opening instead of any button.
import { api, ApiError, loadCatalog, esc, waitText, clock, nameOf, siteFromPath, followBoard, DeviceToken }
  from "/assets/common.js";
import { receptionNotice, nextOpenLine, stateOf, earliest, wallClock, timeText } from "/assets/reception.js";
import { eventName, visitPlan, routeQueue as routeFor } from "/assets/plan.js";

// ---------------------------------------------------------------------------------------------
// Settings and state
// ---------------------------------------------------------------------------------------------
const SITE = siteFromPath();
const PARAMS = new URLSearchParams(location.search);
const IDLE_MS = 60_000;          // any screen returns to the start after a minute without a touch
const TICKET_MS = 20_000;        // the ticket screen returns to the start after 20 s
const TICKET_TAP_GUARD_MS = 1500; // ignore the second tap of a double tap on "Get my ticket"
const ARM_MS = 350;              // new screens ignore taps this long (double taps on はい)
const REQUEST_TIMEOUT_MS = 15_000;
// The characters of a reservation code (no look-alikes: 0/O, 1/I/L, 8/B, 5/S), and its length.
const CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY234679";
const CODE_LEN = 8;
// Printer states in which a resident needs a member of staff (see docs/API.md).
const NEEDS_STAFF = new Set(["paper_end", "cover_open", "offline", "unreachable", "disconnected"]);

const S = {
  lang: "ja",
  step: "loading",
  catalog: null,
  dispenser: null,          // {id, priority_button, printer_agent} or a bare {id} from ?dispenser=
  board: null,
  event: null,              // the chosen life event
  qIndex: 0,
  answers: {},
  priority: false,
  press: null,              // {key, body}: one press of "Get my ticket", reused by retries
  busy: false,
  reqGen: 0,
  ticket: null,
  printer: null,
  ticketAt: 0,
  error: null,
  errorFrom: null,          // "issue" | "catalog" | "checkin"
  setupError: "",
  reservable: true,         // the site takes bookings: the start screen offers check-in
  code: "",                 // the reservation code being entered (normalized, no hyphen)
  checkinError: null,       // {ja, en} under the code: not found, already checked in, too short
  early: null,              // a too_early refusal: {from} (RFC 3339) or {message}
  reservation: null,        // the booking of a checked-in ticket
  late: false,              // checked in after the window: issued as a walk-in
};

const $ = (id) => document.getElementById(id);
const screen = $("screen");

// UI text, Japanese and English.
const TXT = {
  chooseTitle: { ja: "ご用件をお選びください", en: "What brings you here today?" },
  chooseLead: { ja: "ひとつお選びください。関係する手続きを、ひとつの窓口でまとめてご案内します。",
                en: "Choose one. We will help you with all the related procedures at one counter." },
  question: { ja: "質問", en: "Question" },
  yes: { ja: "はい", en: "Yes" },
  no: { ja: "いいえ", en: "No" },
  back: { ja: "戻る", en: "Back" },
  restart: { ja: "最初から", en: "Start over" },
  confirmTitle: { ja: "こちらの手続きをご案内します", en: "We will help you with these procedures" },
  noWrite: { ja: "申請書のご記入は不要です。窓口で職員が作成します。",
             en: "No forms to fill in: our staff prepare them for you at the counter." },
  noWriteTag: { ja: "書かない窓口", en: "No forms" },
  issue: { ja: "この内容で発券する", en: "Get my ticket" },
  issuing: { ja: "発券しています…", en: "Issuing your ticket…" },
  fix: { ja: "戻って修正", en: "Change answers" },
  priorityOn: { ja: "優先受付で発券します", en: "This will be a priority ticket" },
  priority: { ja: "優先", en: "Priority" },
  yourNumber: { ja: "受付番号", en: "Your number" },
  ahead: { ja: "前にお待ちの方", en: "People ahead of you" },
  wait: { ja: "待ち時間の目安", en: "Estimated wait" },
  take: { ja: "番号札をお取りください", en: "Please take your ticket" },
  noPrinter: { ja: "この番号でお呼びします。番号をお控えください", en: "We will call this number. Please remember it." },
  cannotPrint: { ja: "番号札を印刷できません。職員にお声がけください", en: "The ticket cannot be printed. Please ask a staff member." },
  cannotPrintBanner: { ja: "番号札を印刷できません。職員にお声がけください", en: "Tickets cannot be printed right now. Please ask a staff member." },
  seat: { ja: "番号が呼ばれるまで、お掛けになってお待ちください。", en: "Please have a seat until your number is called." },
  done: { ja: "終わる", en: "Done" },
  errTitle: { ja: "申し訳ありません", en: "We are sorry" },
  errIssue: { ja: "番号札を発券できませんでした。", en: "Your ticket could not be issued." },
  errNetwork: { ja: "サーバーと通信できませんでした。もう一度お試しください。", en: "We could not reach the server. Please try again." },
  errCatalog: { ja: "画面を準備できませんでした。", en: "This screen could not be prepared." },
  errStaff: { ja: "この発券機は設定の確認が必要です。職員にお声がけください。", en: "This dispenser needs attention. Please ask a staff member." },
  errAsk: { ja: "続けて発券できない場合は、職員にお声がけください。", en: "If it keeps failing, please ask a staff member." },
  retry: { ja: "もう一度", en: "Try again" },
  retrying: { ja: "送信しています…", en: "Sending…" },
  staffSetup: { ja: "職員用：設定", en: "Staff: setup" },
  setupTitle: { ja: "発券機の設定（職員用）", en: "Dispenser setup (staff only)" },
  setupLead: { ja: "この発券機のトークンを入力してください。一度だけ必要です。", en: "Enter this dispenser's token. This is needed only once." },
  tokenLabel: { ja: "トークン", en: "Token" },
  save: { ja: "保存して開始", en: "Save and start" },
  tokenEmpty: { ja: "トークンを入力してください", en: "Please enter the token" },
  loading: { ja: "準備しています…", en: "Getting ready…" },
  hint: { ja: "画面に触れて操作してください。1分間操作がないと最初の画面に戻ります。",
          en: "Touch the screen to choose. After one minute without a touch, the screen starts over." },
  backIn: { ja: (s) => `${s}秒後に最初の画面に戻ります`, en: (s) => `Back to the start in ${s} s` },
  people: { ja: (n) => `${n}人`, en: (n) => (n === 1 ? "1 person" : `${n} people`) },
  langBtn: { ja: { pri: "English", sec: "英語で表示" }, en: { pri: "日本語", sec: "Japanese" } },
  offline: { ja: "オフライン", en: "Offline" },
  closedLead: { ja: "ただいま番号札は発券できません。", en: "No tickets can be issued right now." },
  closedAsk: { ja: "ご不明な点は職員にお声がけください。", en: "If you need help, please ask a staff member." },
  queueClosed: { ja: "この窓口は受付を終了しています。", en: "This counter is not taking tickets now." },
  checkinStart: { ja: "予約の方", en: "I have a reservation" },
  checkinStartSub: { ja: "予約番号で受付します", en: "Check in with your booking code" },
  checkinTitle: { ja: "予約番号を入力してください", en: "Enter your booking code" },
  checkinLead: { ja: "8文字の予約番号です（ハイフンは不要です）。", en: "The 8-character code of your booking (no hyphen needed)." },
  codeLabel: { ja: "予約番号", en: "Booking code" },
  keyDelete: { ja: "1字消す", en: "Delete" },
  keyClear: { ja: "全部消す", en: "Clear" },
  checkin: { ja: "受付する", en: "Check in" },
  checkingIn: { ja: "受付しています…", en: "Checking in…" },
  codeShort: { ja: "予約番号は8文字です。", en: "The booking code has 8 characters." },
  codeNotFound: { ja: "この予約番号は見つかりません。もう一度ご確認ください。", en: "No booking has this code. Please check it and try again." },
  alreadyIn: { ja: "この予約はすでに受付済みです。職員にお声がけください。", en: "This booking has already been checked in. Please ask a staff member." },
  earlyTitle: { ja: "まだ受付できません", en: "It is too early to check in" },
  earlyAt: { ja: (t) => `${t}から受付できます。しばらくお待ちください。`, en: (t) => `You can check in from ${t}. Please wait a little.` },
  earlyLead: { ja: "ご予約の時間の少し前から受付できます。", en: "Check-in opens shortly before your booked time." },
  errCheckin: { ja: "予約の受付ができませんでした。", en: "Your booking could not be checked in." },
  reserved: { ja: "ご予約の方", en: "Reservation" },
  late: { ja: "予約の受付時間を過ぎたため、予約なしの方と同じ順番でご案内します。",
          en: "Your check-in time has passed: this ticket was issued as a walk-in." },
};

// Stripe colours for the life event buttons (decorative, distinct hues).
const STRIPES = ["#0a58a8", "#17692e", "#8a4b00", "#5b3a9c", "#a4201a", "#006b6b", "#9c2a6b", "#3d4957"];

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------
const other = () => (S.lang === "ja" ? "en" : "ja");

/** Bilingual text: the primary language big, the other smaller. `o` is {ja, en}. */
function bi(o, extra = "") {
  const p = S.lang, s = other();
  const a = o?.[p] ?? o?.ja ?? "", b = o?.[s] ?? "";
  return `<span class="pri" lang="${p}">${esc(a)}${extra}</span>` + (b && b !== a ? `<span class="sec" lang="${s}">${esc(b)}</span>` : "");
}
/** Bilingual with functions per language. */
function biF(o, ...args) { return bi({ ja: o.ja(...args), en: o.en(...args) }); }

/** A v4 UUID; crypto.randomUUID needs a secure context, kiosks on plain http may lack it. */
function uuid() {
  if (crypto.randomUUID) { try { return crypto.randomUUID(); } catch { /* insecure context */ } }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40; b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function withTimeout(promise, ms) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(
    () => reject(new ApiError(0, "timeout", "応答がありません / no answer from the server")), ms))]);
}

/** A code as typed or scanned: full-width forms folded, upper case, only the code's characters
 *  (hyphens, spaces and anything else dropped), at most CODE_LEN of them. A scanned address
 *  (…/ABCDEFGH) gives its last part. */
function normalizeCode(typed) {
  let t = String(typed ?? "").normalize("NFKC").trim();
  if (t.includes("/")) t = t.replace(/[?#].*$/, "").split("/").filter(Boolean).pop() || "";
  return [...t.toUpperCase()].filter((c) => CODE_ALPHABET.includes(c)).join("").slice(0, CODE_LEN);
}

/** "ABCD-EFGH", as the booking page shows it. */
const formatCode = (c) => (c.length > 4 ? `${c.slice(0, 4)}-${c.slice(4)}` : c);

function printerState() {
  const agent = S.dispenser?.printer_agent;
  if (!agent || !S.board?.printers) return null;
  return S.board.printers.find((p) => p.id === agent)?.state ?? null;
}
const printerNeedsStaffLive = () => NEEDS_STAFF.has(printerState());

// ---------------------------------------------------------------------------------------------
// Reception: which queue a plan goes to, and whether it takes tickets now
// ---------------------------------------------------------------------------------------------
/** The queue a visit plan waits in (the server's routing rule); null when none handles it. */
const routeQueue = (plan) => routeFor(S.catalog, plan);

/** A queue's reception from the live board: {state, next_open}; open while the board is unknown. */
function reception(queueId) {
  const b = (S.board?.queues || []).find((q) => q.id === queueId);
  return { state: stateOf(b), next_open: b?.next_open ?? null };
}
const isOpen = (queueId) => !queueId || reception(queueId).state === "open";

/** The queue of a life event's base procedures (before any answer). */
const eventQueue = (le) => routeQueue([...new Set(le.procedures || [])]);

const siteZone = () => S.catalog?.site?.timezone;

/**
 * When no ticket can be issued at all — every queue, or the queue of every life event, takes no
 * tickets now — the state to tell ("closing" when one of them closed for the day, else
 * "closed") and the earliest next opening; null while something can be issued.
 */
function siteClosure() {
  if (!S.catalog || !S.board) return null;
  const queues = (S.catalog.queues || []).map((q) => q.id);
  const events = S.catalog.life_events || [];
  let concerned = null;
  if (queues.length && queues.every((q) => !isOpen(q))) concerned = queues;
  else if (events.length && events.every((le) => !isOpen(eventQueue(le)))) {
    concerned = [...new Set(events.map(eventQueue).filter(Boolean))];
  }
  if (!concerned) return null;
  const rs = concerned.map(reception);
  return {
    state: rs.some((r) => r.state === "closing") ? "closing" : "closed",
    next_open: earliest(rs.map((r) => r.next_open)),
  };
}

/**
 * The notice (and next-opening line) of a reception, bilingual for the kiosk; "" when open.
 * `inButton`: inside a life event's button (phrasing content only, no live region).
 */
function noticeHtml(r, { id = "", big = false, inButton = false } = {}) {
  const n = receptionNotice(r.state, r.next_open, siteZone());
  if (!n) return "";
  const line = nextOpenLine(r.state, r.next_open, siteZone());
  const tag = inButton ? "span" : "div";
  return `<${tag} class="closed-note${big ? " big" : ""}"${id ? ` id="${id}"` : ""} data-state="${esc(r.state)}"
      data-next-open="${esc(r.next_open || "")}"${inButton ? "" : ` role="status"`}>
    <span class="closed-icon" aria-hidden="true">×</span>
    <span class="closed-text">${bi(n)}${line ? `<span class="closed-next">${bi(line)}</span>` : ""}</span></${tag}>`;
}

/** What the board says about everything the screen shows, to re-render when it changes. */
function receptionKey() {
  return (S.board?.queues || []).map((q) => `${q.id}:${stateOf(q)}:${q.next_open || ""}`).join("|");
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------
function go(step) {
  S.step = step;
  render();
  arm();
  poke();
  if (step === "ticket") startTicketTimer(); else stopTicketTimer();
}

/** Buttons that stay disabled while a request is in flight. */
const BUSY_BUTTONS = ["issue", "retry", "checkin"];

/** A new screen ignores taps for a moment, so the second tap of a double tap does not land on it. */
let armTimer = null;
function arm() {
  clearTimeout(armTimer);
  screen.classList.add("arming");
  const buttons = [...screen.querySelectorAll("button:not([disabled])")];
  buttons.forEach((b) => { b.disabled = true; b.dataset.arming = "1"; });
  armTimer = setTimeout(() => {
    screen.classList.remove("arming");
    screen.querySelectorAll("button[data-arming]").forEach((b) => {
      delete b.dataset.arming;
      if (!(BUSY_BUTTONS.includes(b.id) && S.busy)) b.disabled = false;
    });
  }, ARM_MS);
}

function render() {
  document.documentElement.lang = S.lang;
  document.body.dataset.lang = S.lang;
  document.body.dataset.step = S.step;
  renderHeader();
  renderBanner();
  const views = { loading: viewLoading, events: viewEvents, questions: viewQuestions, confirm: viewConfirm,
                  ticket: viewTicket, error: viewError, setup: viewSetup, closed: viewClosed,
                  checkin: viewCheckin, early: viewEarly };
  screen.innerHTML = (views[S.step] || viewLoading)();
  $("hint").innerHTML = ["events", "questions", "checkin"].includes(S.step) ? bi(TXT.hint) : "";
  if (S.step === "setup") setTimeout(() => $("token")?.focus(), 0);
  if (S.step === "checkin") setTimeout(focusCode, 0);
}

function renderHeader() {
  const c = S.catalog;
  $("site-name").innerHTML = c ? bi(c.site.name) : bi({ ja: "受付", en: "Reception" });
  const lb = TXT.langBtn[S.lang];
  $("lang").innerHTML = `<span class="pri" lang="${other()}">${esc(lb.pri)}</span><span class="sec" lang="${S.lang}">${esc(lb.sec)}</span>`;
  $("lang").setAttribute("aria-label", S.lang === "ja" ? "English / 英語で表示" : "日本語 / Japanese");
  const pb = $("priority");
  const show = !!S.dispenser?.priority_button && ["events", "questions", "confirm"].includes(S.step);
  pb.hidden = !show;
  pb.setAttribute("aria-pressed", String(S.priority));
  pb.innerHTML = `<span class="pri"><span class="prio-dot"></span>${esc(TXT.priority[S.lang])}</span><span class="sec">${esc(TXT.priority[other()])}</span>`;
  $("conn").textContent = `${TXT.offline.ja} / ${TXT.offline.en}`;
  tickClock();
}

function renderBanner() {
  const b = $("printer-banner");
  const show = printerNeedsStaffLive() && !["setup", "ticket", "loading", "closed"].includes(S.step);
  b.classList.toggle("show", show);
  b.innerHTML = show ? `<span class="bang" aria-hidden="true">!</span><span>${bi(TXT.cannotPrintBanner)}</span>` : "";
}

function tickClock() {
  const tz = S.catalog?.site?.timezone;
  try { $("time").textContent = clock(Date.now(), tz); } catch { $("time").textContent = clock(Date.now()); }
}

function viewLoading() {
  return `<div class="center" style="text-align:center"><div class="spinner"></div><p class="lead">${bi(TXT.loading)}</p></div>`;
}

function viewEvents() {
  const events = S.catalog.life_events || [];
  const buttons = events.map((le, i) => {
    const name = eventName(le);
    const cert = le.id === "certificates";
    let pri;
    if (S.lang === "ja") {
      const m = /^(.+?)（(.+)）$/.exec(name.ja || "");
      pri = m ? `<span class="pri" lang="ja">${esc(m[1])}<span class="sub">${esc(m[2])}</span></span>`
              : `<span class="pri" lang="ja">${esc(name.ja)}</span>`;
      pri += `<span class="sec" lang="en">${esc(name.en)}</span>`;
    } else {
      pri = bi(name);
    }
    const r = reception(eventQueue(le));
    const closed = r.state !== "open";
    return `<button type="button" class="btn event${cert ? " cert" : ""}${closed ? " closed" : ""}" data-life-event="${esc(le.id)}"
      data-reception="${esc(r.state)}" ${closed ? `disabled aria-disabled="true"` : ""}
      style="--stripe:${STRIPES[i % STRIPES.length]}">${pri}${closed ? noticeHtml(r, { inButton: true }) : ""}</button>`;
  }).join("");
  const checkin = S.reservable
    ? `<button type="button" class="btn checkin-start" id="checkin-start">
        <span class="pri" lang="${S.lang}">${esc(TXT.checkinStart[S.lang])}<span class="sub">${esc(TXT.checkinStartSub[S.lang])}</span></span>
        <span class="sec" lang="${other()}">${esc(TXT.checkinStart[other()])} — ${esc(TXT.checkinStartSub[other()])}</span></button>`
    : "";
  return `<h1 class="title">${bi(TXT.chooseTitle)}</h1>
    <p class="lead">${bi(TXT.chooseLead)}</p>
    <div class="events" style="${events.length > 8 ? "--cols:" + (matchMedia("(orientation: landscape)").matches ? 4 : 3) : ""}">${buttons}</div>
    ${checkin}`;
}

function viewQuestions() {
  const le = S.event;
  const qs = le.questions;
  const q = qs[S.qIndex];
  const prev = S.answers[q.id];
  const dots = qs.map((_, i) => `<i class="${i <= S.qIndex ? "on" : ""}"></i>`).join("");
  return `<div class="progress">
      <span class="chip inline">${bi(eventName(le))}</span>
      <span class="dots" aria-hidden="true">${dots}</span>
      <span class="num">${esc(TXT.question[S.lang])} ${S.qIndex + 1} / ${qs.length}</span>
    </div>
    <div class="question">
      <p class="qtext" id="question-text" data-question="${esc(q.id)}">${bi(q.text)}</p>
      <div class="answers">
        <button type="button" class="btn answer yes" data-answer="yes" aria-pressed="${prev === true}">
          <span class="mark" aria-hidden="true">○</span>${bi(TXT.yes)}</button>
        <button type="button" class="btn answer no" data-answer="no" aria-pressed="${prev === false}">
          <span class="mark" aria-hidden="true">×</span>${bi(TXT.no)}</button>
      </div>
    </div>
    <div class="row">
      <button type="button" class="btn" data-go="back">${bi({ ja: "← " + TXT.back.ja, en: "← " + TXT.back.en })}</button>
      <button type="button" class="btn" data-go="restart">${bi(TXT.restart)}</button>
    </div>`;
}

function viewConfirm() {
  const le = S.event;
  const plan = visitPlan(le, S.answers);
  const r = reception(routeQueue(plan));
  const closed = r.state !== "open";
  const procs = S.catalog.procedures || [];
  const items = plan.map((code) => `<li data-procedure="${esc(code)}"><span class="check" aria-hidden="true"></span><span>${bi(nameOf(procs, code))}</span></li>`).join("");
  const pcols = plan.length <= 3 ? "--pcols:1" : "";
  const dense = plan.length > 5 ? " dense" : plan.length <= 2 ? " few" : "";
  const issueBtn = `<button type="button" class="btn primary" id="issue" aria-busy="${S.busy}" ${S.busy || closed ? "disabled" : ""}
      data-reception="${esc(r.state)}">
      <span class="idle-label">${bi(TXT.issue)}</span><span class="busy-label">${bi(TXT.issuing)}</span></button>`;
  const backBtn = `<button type="button" class="btn" data-go="back">${bi({ ja: "← " + TXT.fix.ja, en: "← " + TXT.fix.en })}</button>`;
  const restartBtn = `<button type="button" class="btn" data-go="restart">${bi(TXT.restart)}</button>`;
  return `<div class="title-row"><h1 class="title">${bi(TXT.confirmTitle)}</h1><span class="chip inline">${bi(eventName(le))}</span></div>
    <div class="plan-wrap"><ul class="plan${dense}" id="plan" style="${pcols}">${items}</ul></div>
    <div class="nowrite"><b>${esc(TXT.noWriteTag[S.lang])}</b><span>${bi(TXT.noWrite)}</span></div>
    ${S.priority ? `<div class="prio-note inline">${bi(TXT.priorityOn)}</div>` : ""}
    ${closed ? noticeHtml(r, { id: "reception-notice" }) : ""}
    <div class="confirm-actions">${issueBtn}${backBtn}${restartBtn}</div>`;
}

function viewTicket() {
  const t = S.ticket;
  const queues = S.catalog.queues || [];
  const ahead = Math.max(0, (t.position ?? 1) - 1);
  const needsStaff = S.printer?.needs_staff === true || printerNeedsStaffLive();
  const noPrinter = !S.printer && !S.dispenser?.printer_agent;
  const left = Math.max(0, Math.ceil((TICKET_MS - (Date.now() - S.ticketAt)) / 1000));
  let message;
  if (needsStaff) {
    message = `<div class="staff-alert" id="printer-alert" role="alert"><span class="bang" aria-hidden="true">!</span><span>${bi(TXT.cannotPrint)}</span></div>`;
  } else if (noPrinter) {
    message = `<div class="take" id="take">${bi(TXT.noPrinter)}</div>`;
  } else {
    message = `<div class="take" id="take">${bi(TXT.take)}<span class="arrow" aria-hidden="true">▼</span></div>`;
  }
  const waitVal = `<span class="pri">${esc(waitText(t.estimated_wait_s, S.lang))}</span><span class="sec">${esc(waitText(t.estimated_wait_s, other()))}</span>`;
  return `<div class="ticket">
      <div class="ticket-card">
        <div class="ticket-label">${bi(TXT.yourNumber)}</div>
        <div id="ticket-number" class="num">${esc(t.number)}</div>
        <div class="queue-name" id="ticket-queue">${bi(nameOf(queues, t.queue))}</div>
        ${t.priority ? `<div class="prio-tag">${esc(TXT.priority.ja)} / ${esc(TXT.priority.en)}</div>` : ""}
        ${S.reservation && !S.late ? `<div class="resv-tag" id="ticket-reservation">${esc(TXT.reserved.ja)} / ${esc(TXT.reserved.en)}</div>` : ""}
      </div>
      <div class="side">
        <div class="facts">
          <div class="fact"><div class="k inline">${bi(TXT.ahead)}</div>
            <div class="v" id="ticket-ahead" data-ahead="${ahead}">${biF(TXT.people, ahead)}</div></div>
          <div class="fact"><div class="k inline">${bi(TXT.wait)}</div>
            <div class="v" id="ticket-wait">${waitVal}</div></div>
        </div>
        ${S.reservation ? reservationPlanHtml(t) : ""}
        ${message}
        <div class="seat">${bi(TXT.seat)}</div>
        <button type="button" class="btn primary" data-go="done" style="min-width:40vmin">${bi(TXT.done)}</button>
        <div class="countdown" id="countdown">${esc(TXT.backIn[S.lang](left))} / ${esc(TXT.backIn[other()](left))}</div>
      </div>
    </div>`;
}

/** A checked-in ticket's booked plan (and, when late, that it was issued as a walk-in). */
function reservationPlanHtml(t) {
  const procs = S.catalog.procedures || [];
  const codes = t.procedures?.length ? t.procedures : S.reservation.procedures || [];
  const list = (lang, id) => `<ul class="resv-plan${lang === S.lang ? "" : " sec"}"${id ? ` id="${id}"` : ""} lang="${lang}">${
    codes.map((c) => `<li data-procedure="${esc(c)}">${esc(nameOf(procs, c)[lang])}</li>`).join("")}</ul>`;
  return `${S.late ? `<div class="late-note" id="late-note" role="status">${bi(TXT.late)}</div>` : ""}
    <div class="resv-plan-box">${list(S.lang, "ticket-plan")}${list(other(), "")}</div>`;
}

function errorMessage(e) {
  if (!e) return TXT.errIssue;
  if (e.status === 0) return TXT.errNetwork;
  if (e.status === 401 || e.status === 403 || e.code === "unknown_dispenser") return TXT.errStaff;
  if (S.errorFrom === "checkin") return TXT.errCheckin;
  return S.errorFrom === "catalog" ? TXT.errCatalog : TXT.errIssue;
}

/** The reception a `queue_closed` refusal tells: its next opening, the board's state (or closing). */
function refusedReception(e) {
  const plan = S.event ? visitPlan(S.event, S.answers) : [];
  const live = reception(routeQueue(plan));
  return {
    state: live.state === "open" ? "closing" : live.state,
    next_open: e.details?.next_open ?? live.next_open ?? null,
  };
}

function viewError() {
  const e = S.error;
  if (e?.code === "queue_closed") {
    return `<div class="center" id="queue-closed">
        <div class="err-head"><div class="err-icon" aria-hidden="true">!</div><h1 class="title">${bi(TXT.errTitle)}</h1></div>
        <p class="lead" id="error-text">${bi(TXT.queueClosed)}</p>
        ${noticeHtml(refusedReception(e), { id: "reception-notice", big: true })}
        <div class="row">
          ${S.event ? `<button type="button" class="btn" data-go="back">${bi({ ja: "← " + TXT.back.ja, en: "← " + TXT.back.en })}</button>` : ""}
          <button type="button" class="btn primary" data-go="restart">${bi(TXT.restart)}</button>
        </div>
      </div>`;
  }
  const staff = e && (e.status === 401 || e.status === 403 || e.code === "unknown_dispenser");
  const head = S.errorFrom === "catalog" && e?.status !== 0 ? TXT.errCatalog : errorMessage(e);
  const detail = e ? `${e.status ? e.status + " " : ""}${e.code || ""}: ${e.message || ""}` : "";
  const canBack = (S.errorFrom === "issue" && S.event) || S.errorFrom === "checkin";
  return `<div class="center">
      <div class="err-head"><div class="err-icon" aria-hidden="true">!</div><h1 class="title">${bi(TXT.errTitle)}</h1></div>
      <p class="lead" id="error-text">${bi(head)}</p>
      ${(S.errorFrom === "issue" || S.errorFrom === "checkin") && !staff ? `<p class="lead">${bi(TXT.errAsk)}</p>` : ""}
      ${detail ? `<div class="detail" id="error-detail">${esc(detail)}</div>` : ""}
      <button type="button" class="btn primary" id="retry" aria-busy="${S.busy}" ${S.busy ? "disabled" : ""}>${bi(S.busy ? TXT.retrying : TXT.retry)}</button>
      <div class="row">
        ${canBack ? `<button type="button" class="btn" data-go="back">${bi({ ja: "← " + TXT.back.ja, en: "← " + TXT.back.en })}</button>` : ""}
        ${S.catalog ? `<button type="button" class="btn" data-go="restart">${bi(TXT.restart)}</button>` : ""}
        ${staff ? `<button type="button" class="btn" data-go="setup">${bi(TXT.staffSetup)}</button>` : ""}
      </div>
    </div>`;
}

/** Nothing can be issued: the notice and the next opening, full screen, without a button to issue. */
function viewClosed() {
  const r = siteClosure() || { state: "closed", next_open: null };
  return `<div class="center closed-screen" id="closed-notice" data-state="${esc(r.state)}">
      <div class="closed-mark" aria-hidden="true">×</div>
      ${noticeHtml(r, { id: "reception-notice", big: true })}
      <p class="lead">${bi(TXT.closedLead)}</p>
      <p class="lead">${bi(TXT.closedAsk)}</p>
    </div>`;
}

/** The code entry: the code as entered (typed or scanned into the field, or from the keys of the
 *  code's alphabet below it), a message, and the check-in button. */
function viewCheckin() {
  const keys = ["2", "3", "4", "6", "7", "9", "⌫", ..."ACDEFGHJKMNPQR", ..."TUVWXY", "clear"];
  const keyHtml = keys.map((k) => {
    if (k === "⌫") {
      return `<button type="button" class="btn key key-fn" id="key-back" aria-label="${esc(TXT.keyDelete.ja)} / ${esc(TXT.keyDelete.en)}">
        <span class="pri" aria-hidden="true">⌫</span><span class="sec">${esc(TXT.keyDelete[S.lang])}</span></button>`;
    }
    if (k === "clear") return `<button type="button" class="btn key key-fn" id="key-clear">${bi(TXT.keyClear)}</button>`;
    return `<button type="button" class="btn key" data-key="${k}">${k}</button>`;
  }).join("");
  return `<h1 class="title">${bi(TXT.checkinTitle)}</h1>
    <p class="lead">${bi(TXT.checkinLead)}</p>
    <form class="code-form" id="checkin-form" autocomplete="off">
      <label class="sr-only" for="checkin-code">${esc(TXT.codeLabel.ja)} / ${esc(TXT.codeLabel.en)}</label>
      <input id="checkin-code" name="code" class="code-input num" value="${esc(formatCode(S.code))}" placeholder="____-____"
        inputmode="none" autocomplete="off" autocapitalize="characters" spellcheck="false" maxlength="40"
        aria-describedby="checkin-error">
      <div class="field-error code-error" id="checkin-error" role="alert">${S.checkinError ? bi(S.checkinError) : ""}</div>
      <div class="keys" id="keys">${keyHtml}</div>
      <div class="row">
        <button type="button" class="btn" data-go="restart">${bi({ ja: "← " + TXT.back.ja, en: "← " + TXT.back.en })}</button>
        <button type="submit" class="btn primary" id="checkin" aria-busy="${S.busy}" ${S.busy ? "disabled" : ""}>
          <span class="idle-label">${bi(TXT.checkin)}</span><span class="busy-label">${bi(TXT.checkingIn)}</span></button>
      </div>
    </form>`;
}

/** A `too_early` refusal: from when the booking can be checked in. */
function viewEarly() {
  const w = wallClock(S.early?.from);
  const at = w
    ? { ja: TXT.earlyAt.ja(timeText(w, "ja")), en: TXT.earlyAt.en(timeText(w, "en")) }
    : { ja: S.early?.message || TXT.earlyLead.ja, en: "" };
  return `<div class="center" id="too-early">
      <div class="err-head"><div class="err-icon" aria-hidden="true">!</div><h1 class="title">${bi(TXT.earlyTitle)}</h1></div>
      <div class="early-note" id="early-text" role="status" data-check-in-from="${esc(S.early?.from || "")}">${bi(at)}</div>
      <p class="lead">${bi(TXT.earlyLead)}</p>
      <div class="row">
        <button type="button" class="btn" data-go="back">${bi({ ja: "← " + TXT.back.ja, en: "← " + TXT.back.en })}</button>
        <button type="button" class="btn primary" data-go="restart">${bi(TXT.restart)}</button>
      </div>
    </div>`;
}

function viewSetup() {
  const d = S.dispenser?.id || "—";
  const site = S.catalog ? `${S.catalog.site.name.ja} / ${S.catalog.site.name.en}` : SITE;
  return `<div class="center">
      <h1 class="title">${bi(TXT.setupTitle)}</h1>
      <p class="lead">${bi(TXT.setupLead)}</p>
      <form class="setup-card" id="setup-form" autocomplete="off">
        <label for="token">${esc(TXT.tokenLabel.ja)} / ${esc(TXT.tokenLabel.en)}</label>
        <input id="token" name="token" type="password" autocomplete="off" spellcheck="false" autocapitalize="off">
        <div class="field-error" id="token-error" role="alert">${esc(S.setupError)}</div>
        <button type="submit" class="btn primary" id="save-token">${bi(TXT.save)}</button>
        <div class="setup-info">発券機 / Dispenser: <b>${esc(d)}</b> · 拠点 / Site: <b>${esc(site)}</b>
          · <span class="muted">URL ?dispenser=ID</span></div>
      </form>
    </div>`;
}

// ---------------------------------------------------------------------------------------------
// Flow
// ---------------------------------------------------------------------------------------------
function reset() {
  S.event = null; S.qIndex = 0; S.answers = {}; S.priority = false;
  S.press = null; S.ticket = null; S.printer = null; S.error = null; S.errorFrom = null;
  S.code = ""; S.checkinError = null; S.early = null; S.reservation = null; S.late = false;
  S.reqGen++; S.busy = false;
  if (!token.value) { go("setup"); return; }
  go(siteClosure() ? "closed" : "events");
}

function chooseEvent(id) {
  const le = (S.catalog.life_events || []).find((e) => e.id === id);
  if (!le || !isOpen(eventQueue(le))) return;
  S.event = le; S.answers = {}; S.qIndex = 0; S.press = null;
  go((le.questions || []).length ? "questions" : "confirm");
}

function answer(yes) {
  const q = S.event.questions[S.qIndex];
  S.answers[q.id] = yes;
  S.press = null;
  if (S.qIndex + 1 < S.event.questions.length) { S.qIndex++; go("questions"); }
  else go("confirm");
}

function back() {
  if (S.step === "questions") {
    if (S.qIndex > 0) { S.qIndex--; go("questions"); } else reset();
  } else if (S.step === "error" && S.errorFrom === "checkin") {
    go("checkin");
  } else if (S.step === "early") {
    go("checkin");
  } else if (S.step === "error" && S.event) {
    go("confirm");
  } else if (S.step === "confirm") {
    const n = (S.event?.questions || []).length;
    if (!S.event) reset();
    else if (n) { S.qIndex = n - 1; go("questions"); }
    else reset();
  } else reset();
}

async function issue() {
  if (S.busy || !S.event) return;
  if (!isOpen(routeQueue(visitPlan(S.event, S.answers)))) { render(); return; }
  if (!S.press) {
    const body = { life_event: S.event.id, answers: {}, lang: S.lang, priority: !!S.priority };
    for (const q of S.event.questions || []) body.answers[q.id] = S.answers[q.id] === true;
    if (S.dispenser?.id) body.dispenser = S.dispenser.id;
    S.press = { key: uuid(), body };
  }
  const press = S.press;
  const gen = ++S.reqGen;
  S.busy = true;
  setBusyButtons();
  try {
    const reply = await withTimeout(api("POST", `/api/v1/sites/${encodeURIComponent(SITE)}/tickets`, {
      token: token.value, body: press.body, headers: { "Idempotency-Key": press.key },
    }), REQUEST_TIMEOUT_MS);
    if (gen !== S.reqGen) return;
    S.busy = false;
    S.press = null;
    S.ticket = reply.ticket;
    S.printer = reply.printer || null;
    S.ticketAt = Date.now();
    go("ticket");
  } catch (e) {
    if (gen !== S.reqGen) return;
    S.busy = false;
    S.error = e instanceof ApiError ? e : new ApiError(0, "error", String(e?.message || e));
    S.errorFrom = "issue";
    // A refusal (4xx other than 408/429) will not succeed with the same press; a fresh press may.
    // Network errors, time-outs and 5xx keep the press: its retry reuses the Idempotency-Key.
    if (S.error.status >= 400 && S.error.status < 500 && ![408, 429].includes(S.error.status)) S.press = null;
    go("error");
  }
}

function setBusyButtons() {
  for (const id of BUSY_BUTTONS) {
    const b = $(id);
    if (!b) continue;
    b.disabled = S.busy;
    b.setAttribute("aria-busy", String(S.busy));
    if (id === "retry") b.innerHTML = bi(S.busy ? TXT.retrying : TXT.retry);
  }
}

// ---------------------------------------------------------------------------------------------
// Check-in with a booking code
// ---------------------------------------------------------------------------------------------
function startCheckin() {
  S.event = null; S.answers = {}; S.qIndex = 0; S.press = null;
  S.code = ""; S.checkinError = null; S.early = null;
  go("checkin");
}

/** Shows the code (and clears the message) without rebuilding the screen. */
function showCode() {
  const input = $("checkin-code");
  if (input && input.value !== formatCode(S.code)) input.value = formatCode(S.code);
  const err = $("checkin-error");
  if (err) err.innerHTML = S.checkinError ? bi(S.checkinError) : "";
}

function keyPressed(btn) {
  if (btn.dataset.key) {
    if (S.code.length < CODE_LEN) S.code += btn.dataset.key;
  } else if (btn.id === "key-back") {
    S.code = S.code.slice(0, -1);
  } else if (btn.id === "key-clear") {
    S.code = "";
  }
  S.checkinError = null;
  showCode();
  focusCode();
}

/** The code field keeps the focus (typed or scanned input goes there), the caret at its end. */
function focusCode() {
  const input = $("checkin-code");
  if (!input) return;
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

/** Typed or scanned into the field: kept normalized, shown grouped 4-4. */
function codeTyped(input) {
  S.code = normalizeCode(input.value);
  S.checkinError = null;
  input.value = formatCode(S.code);
  showCode();
}

async function checkIn() {
  if (S.busy) return;
  const field = $("checkin-code");
  if (field) S.code = normalizeCode(field.value);
  if (S.code.length !== CODE_LEN) {
    S.checkinError = TXT.codeShort;
    if (S.step === "checkin") showCode(); else go("checkin");
    return;
  }
  const body = { lang: S.lang };
  if (S.dispenser?.id) body.dispenser = S.dispenser.id;
  const gen = ++S.reqGen;
  S.busy = true;
  setBusyButtons();
  try {
    const reply = await withTimeout(api("POST",
      `/api/v1/sites/${encodeURIComponent(SITE)}/reservations/${encodeURIComponent(S.code)}/check-in`,
      { token: token.value, body }), REQUEST_TIMEOUT_MS);
    if (gen !== S.reqGen) return;
    S.busy = false;
    S.ticket = reply.ticket;
    S.printer = reply.printer || null;
    S.reservation = reply.reservation || { procedures: reply.ticket?.procedures || [] };
    S.late = reply.late === true;
    S.ticketAt = Date.now();
    go("ticket");
  } catch (e) {
    if (gen !== S.reqGen) return;
    S.busy = false;
    const err = e instanceof ApiError ? e : new ApiError(0, "error", String(e?.message || e));
    if (err.code === "reservation_not_found" || err.code === "already_checked_in") {
      S.checkinError = err.code === "already_checked_in" ? TXT.alreadyIn : TXT.codeNotFound;
      go("checkin");
    } else if (err.code === "too_early") {
      S.early = { from: err.details?.check_in_from || null, message: err.message };
      go("early");
    } else {
      S.error = err;
      S.errorFrom = "checkin";
      go("error");
    }
  }
}

async function retry() {
  if (S.errorFrom === "catalog") { await boot(); return; }
  if (S.errorFrom === "checkin") { await checkIn(); return; }
  await issue();
}

function saveToken(ev) {
  ev?.preventDefault();
  const v = ($("token")?.value || "").trim();
  if (!v) { S.setupError = `${TXT.tokenEmpty.ja} / ${TXT.tokenEmpty.en}`; $("token-error").textContent = S.setupError; return; }
  token.save(v);
  S.setupError = "";
  if (S.catalog) reset(); else boot();
}

// ---------------------------------------------------------------------------------------------
// Timers: inactivity and the ticket screen
// ---------------------------------------------------------------------------------------------
let idleTimer = null;
function poke() {
  clearTimeout(idleTimer);
  idleTimer = setTimeout(() => {
    if (!["events", "setup", "loading", "closed"].includes(S.step) && !S.busy) reset();
    else poke();
  }, IDLE_MS);
}
["pointerdown", "keydown", "touchstart"].forEach((t) => addEventListener(t, poke, { capture: true, passive: true }));

let ticketTimer = null;
function startTicketTimer() {
  stopTicketTimer();
  ticketTimer = setInterval(() => {
    const left = Math.max(0, Math.ceil((TICKET_MS - (Date.now() - S.ticketAt)) / 1000));
    const el = $("countdown");
    if (el) el.textContent = `${TXT.backIn[S.lang](left)} / ${TXT.backIn[other()](left)}`;
    if (left <= 0) reset();
  }, 250);
}
function stopTicketTimer() { clearInterval(ticketTimer); ticketTimer = null; }

setInterval(tickClock, 1000);

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------
document.addEventListener("click", (ev) => {
  const t = ev.target;
  if (t.closest("#lang")) {
    S.lang = S.lang === "ja" ? "en" : "ja";
    render();
    return;
  }
  if (t.closest("#priority")) {
    if (S.busy) return;
    S.priority = !S.priority;
    S.press = null;
    render();
    return;
  }
  if (S.step === "ticket") {
    // Any tap on the ticket screen goes back to the start, after a short guard so that the
    // second tap of a double tap on "Get my ticket" does not hide the number at once.
    if (Date.now() - S.ticketAt >= TICKET_TAP_GUARD_MS) reset();
    return;
  }
  const btn = t.closest("button");
  if (!btn || btn.disabled) return;
  if (btn.dataset.lifeEvent) return chooseEvent(btn.dataset.lifeEvent);
  if (btn.dataset.answer) return answer(btn.dataset.answer === "yes");
  if (btn.id === "issue") return void issue();
  if (btn.id === "checkin-start") return startCheckin();
  if (btn.dataset.key || btn.id === "key-back" || btn.id === "key-clear") return keyPressed(btn);
  if (btn.id === "retry") return void retry();
  switch (btn.dataset.go) {
    case "back": return back();
    case "restart": return reset();
    case "setup": S.setupError = ""; return go("setup");
  }
});
document.addEventListener("submit", (ev) => {
  if (ev.target.id === "setup-form") saveToken(ev);
  if (ev.target.id === "checkin-form") { ev.preventDefault(); void checkIn(); }
});
document.addEventListener("input", (ev) => { if (ev.target.id === "checkin-code") codeTyped(ev.target); });

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------
/** `#token=…` in the address stores the dispenser token once and is removed from the address. */
const token = new DeviceToken("dispenser", {
  onAddress: () => { if (S.step === "setup") { if (S.catalog) reset(); else boot(); } },
});

let feed = null;
let bootRetry = null;
async function boot() {
  S.busy = false;
  if (!S.catalog) go("loading");
  try {
    S.catalog = await withTimeout(loadCatalog(SITE), REQUEST_TIMEOUT_MS);
  } catch (e) {
    S.error = e; S.errorFrom = "catalog";
    go("error");
    // A kiosk that starts before the server recovers by itself.
    clearTimeout(bootRetry);
    bootRetry = setTimeout(() => { if (S.step === "error" && S.errorFrom === "catalog") boot(); }, 15_000);
    return;
  }
  const list = S.catalog.dispensers || [];
  const wanted = PARAMS.get("dispenser");
  S.dispenser = (wanted ? list.find((d) => d.id === wanted) || { id: wanted, priority_button: false, printer_agent: null }
                        : list[0]) || null;
  document.title = `${S.catalog.site.name.ja} 受付 / Reception`;
  checkReservable();
  feed ??= followBoard(SITE, {
    onBoard: (b) => { S.board = b; onBoard(); },
    onStatus: (up) => $("conn").classList.toggle("show", !up),
  });
  reset();
}

/** Whether the site takes bookings (a site without `[sites.reservations]` answers 404
 *  `no_reservations`): the start screen offers check-in only then. Unknown: offered. */
function checkReservable() {
  api("GET", `/api/v1/sites/${encodeURIComponent(SITE)}/reservations/slots`, { token: token.value })
    .then(() => true)
    .catch((e) => !(e instanceof ApiError && e.code === "no_reservations"))
    .then((yes) => {
      if (yes === S.reservable) return;
      S.reservable = yes;
      // Only the button changes: the life events under the resident's finger stay put.
      if (!yes) $("checkin-start")?.remove();
      else if (S.step === "events" && !S.busy) { render(); arm(); }
    });
}

let shownReception = "";
function onBoard() {
  renderBanner();
  // Reception opened or closed somewhere: the start screen, the life events and the issue
  // button follow at once (never under a request in flight).
  const key = receptionKey();
  if (key !== shownReception) {
    shownReception = key;
    if (!S.busy) {
      if (S.step === "events" || S.step === "closed") {
        const want = siteClosure() ? "closed" : "events";
        if (want !== S.step) go(want); else { render(); arm(); }
      } else if (S.step === "confirm") {
        render(); arm();
      }
    }
  }
  // The ticket screen shows the warning as soon as the printer reports trouble.
  if (S.step === "ticket" && printerNeedsStaffLive() && !$("printer-alert")) render();
}

render();
boot();
