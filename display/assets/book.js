// The booking page for residents (/book/{site}, no token), phones first:
//   life event → yes/no questions → the visit plan → a day of the next four weeks → a slot →
//   confirm → the booking code (ABCD-EFGH), the time, the check-in window and a QR code;
//   or, with a code: the booking → move it to another slot, or cancel it.
// `?lang=en` (or the header button) shows it in English first. No name and no contact are asked
// for or stored: the code is the booking's only credential. Once booked, a resident may ask for
// an e-mail the day before (optional; the address is deleted at check-in, on cancelling or once the
// slot has passed); the offer goes away where the city sends no e-mail (404 `no_notices`). The plan is built as the kiosk builds
// it (plan.js); a plan whose queue takes no bookings (certificates only, bereavement) is not
// bookable, and the page says to come without one.
import { api, ApiError, loadCatalog, esc, nameOf, siteFromPath } from "/assets/common.js";
import { wallClock, todayAt } from "/assets/reception.js";
import { eventName, visitPlan, routeQueue } from "/assets/plan.js";

// ---------------------------------------------------------------------------------------------
// Settings and state
// ---------------------------------------------------------------------------------------------
const SITE = siteFromPath();
const PARAMS = new URLSearchParams(location.search);
/** Days offered, today included (the server's `horizon_days` in the demo). */
const HORIZON_DAYS = 28;
/** Days read at once when the calendar fills in. */
const PARALLEL = 4;
const REQUEST_TIMEOUT_MS = 20_000;
const CODE_ALPHABET = "ACDEFGHJKMNPQRTUVWXY234679";
const CODE_LEN = 8;

const B = {
  lang: PARAMS.get("lang") === "en" ? "en" : "ja",
  step: "loading",
  catalog: null,
  event: null,            // the chosen life event
  qIndex: 0,
  answers: {},
  plan: [],               // procedure codes
  queue: null,            // the plan's queue
  bookable: null,         // true | false | null (checking) | "error"
  siteBooks: true,        // false: the site takes no bookings at all
  days: new Map(),        // "queue|date" → {state: "loading" | "open" | "full" | "closed" | "error", slots}
  date: null,             // the chosen day
  slot: null,             // the chosen slot {start, end, free}
  mode: "book",           // "book" | "move" (the days and slots of a booking being moved)
  reservation: null,      // the booking shown: just made or moved, or looked up by its code
  moved: false,
  busy: false,
  notice: null,           // {kind: "error" | "info", text: {ja, en}} at the top of the step
  lookupCode: "",
  // The day-before e-mail of the booking shown on the done step.
  remind: { key: "", state: "idle", email: "", at: null, error: null }, // state: "idle" | "busy" | "set"
  remindOffered: true,    // false once the server said it sends no e-mail (404 no_notices)
};

const $ = (id) => document.getElementById(id);
const main = $("main");

const T = {
  app: { ja: "来庁予約", en: "Book a visit" },
  langBtn: { ja: "English", en: "日本語" },
  loading: { ja: "読み込んでいます…", en: "Loading…" },
  chooseTitle: { ja: "ご用件をお選びください", en: "What is your visit for?" },
  chooseLead: { ja: "ご用件と簡単な質問から、窓口でご案内する手続きをまとめます。日時を選んで予約すると、当日は待たずにご案内します。",
                en: "Tell us why you are coming and answer a few questions: we list the procedures, you pick a time, and on the day you are helped without the usual wait." },
  manageTitle: { ja: "予約の確認・変更・取消", en: "View, change or cancel a booking" },
  manageLead: { ja: "予約番号をお持ちの方はこちら", en: "If you have a booking code" },
  question: { ja: "質問", en: "Question" },
  yes: { ja: "はい", en: "Yes" },
  no: { ja: "いいえ", en: "No" },
  back: { ja: "戻る", en: "Back" },
  restart: { ja: "最初の画面へ", en: "Back to the start" },
  planTitle: { ja: "ご案内する手続き", en: "Procedures for your visit" },
  planLead: { ja: "窓口でこれらの手続きをまとめてご案内します。申請書のご記入は不要です。",
              en: "We will help you with all of these at one counter. No forms to fill in." },
  checking: { ja: "予約できるか確認しています…", en: "Checking whether this visit can be booked…" },
  notBookable: { ja: "この手続きは予約できません。予約なしで、直接ご来庁ください。",
                 en: "This visit cannot be booked. Please come to the office without a booking." },
  noBookings: { ja: "この窓口では来庁予約を受け付けていません。予約なしで、直接ご来庁ください。",
                en: "This office takes no bookings. Please come without one." },
  congestion: { ja: "窓口の混雑状況を見る", en: "See how busy the counters are" },
  toDays: { ja: "日にちを選ぶ", en: "Choose a day" },
  daysTitle: { ja: "日にちを選んでください", en: "Choose a day" },
  daysLead: { ja: "○の日に空きがあります。予約は4週間先まで、平日のみです。",
              en: "Days marked ○ have free places. Bookings are for weekdays in the next four weeks." },
  moveDaysTitle: { ja: "変更先の日にちを選んでください", en: "Choose the new day" },
  range: { ja: (a, b) => `${a}〜${b}`, en: (a, b) => `${a} to ${b}` },
  open: { ja: "空きあり", en: "places free" },
  full: { ja: "満員", en: "full" },
  closed: { ja: "予約なし（閉庁日など）", en: "no bookings (closed)" },
  loadingDay: { ja: "確認中", en: "checking" },
  dayError: { ja: "読み込めませんでした", en: "could not be loaded" },
  reloadDays: { ja: "読み込み直す", en: "Load again" },
  slotsTitle: { ja: "時間を選んでください", en: "Choose a time" },
  slotsLead: { ja: "ご来庁の時間帯です。残りの数は予約できる人数です。", en: "The time of your visit, with the places left." },
  left: { ja: (n) => `残り${n}`, en: (n) => `${n} left` },
  slotFull: { ja: "満員", en: "Full" },
  currentSlot: { ja: "現在の予約", en: "Your booking" },
  noSlots: { ja: "この日に予約できる時間はありません。別の日をお選びください。", en: "No time can be booked on this day. Please choose another day." },
  otherDay: { ja: "別の日を選ぶ", en: "Choose another day" },
  confirmTitle: { ja: "予約の内容を確認してください", en: "Check your booking" },
  moveConfirmTitle: { ja: "変更の内容を確認してください", en: "Check the change" },
  when: { ja: "日時", en: "Date and time" },
  before: { ja: "変更前", en: "Now" },
  after: { ja: "変更後", en: "New" },
  purpose: { ja: "ご用件", en: "Visit for" },
  procedures: { ja: "手続き", en: "Procedures" },
  book: { ja: "この内容で予約する", en: "Book this visit" },
  booking: { ja: "予約しています…", en: "Booking…" },
  move: { ja: "この日時に変更する", en: "Move my booking here" },
  moving: { ja: "変更しています…", en: "Moving…" },
  privacy: { ja: "お名前・連絡先などの個人情報は不要です。予約番号だけが予約の控えです（前日のお知らせメールを希望された場合のみ、アドレスをご来庁まで保存します）。",
             en: "No name or contact details are needed: the booking code is your only record of it (only if you ask for a reminder e-mail is your address kept, until your visit)." },
  doneTitle: { ja: "予約しました", en: "Your visit is booked" },
  movedTitle: { ja: "予約を変更しました", en: "Your booking has been moved" },
  code: { ja: "予約番号", en: "Booking code" },
  keepCode: { ja: "予約番号を控えるか、この画面を保存してください。", en: "Write down the code or save this screen." },
  checkIn: { ja: (a, b) => `受付機で予約番号を入力してください。${a}〜${b}`, en: (a, b) => `Check in at the kiosk from ${a} to ${b}` },
  lateNote: { ja: "受付時間を過ぎると、予約なしの方と同じ順番でのご案内になります。",
              en: "After that, you are served as a walk-in, in the usual order." },
  qrAlt: { ja: (c) => `予約番号 ${c} のQRコード`, en: (c) => `QR code of booking code ${c}` },
  qrCaption: { ja: "予約番号のQRコード", en: "Your booking code as a QR code" },
  manageThis: { ja: "予約の確認・変更・取消", en: "View, change or cancel this booking" },
  lookupLabel: { ja: "予約番号（8文字）", en: "Booking code (8 characters)" },
  lookupHint: { ja: "例：ACDE-F234（ハイフンや大文字・小文字は区別しません）", en: "e.g. ACDE-F234 (hyphens and case do not matter)" },
  lookup: { ja: "予約を表示する", en: "Show my booking" },
  looking: { ja: "確認しています…", en: "Looking it up…" },
  codeShort: { ja: "予約番号は8文字です。", en: "A booking code has 8 characters." },
  codeNotFound: { ja: "この予約番号の予約はありません。入力をご確認ください。", en: "No booking has this code. Please check it." },
  bookingTitle: { ja: "ご予約の内容", en: "Your booking" },
  change: { ja: "日時を変更する", en: "Change the date or time" },
  cancel: { ja: "予約を取り消す", en: "Cancel the booking" },
  cancelTitle: { ja: "この予約を取り消しますか", en: "Cancel this booking?" },
  cancelLead: { ja: "取り消した予約は元に戻せません。", en: "A cancelled booking cannot be restored." },
  cancelYes: { ja: "取り消す", en: "Yes, cancel it" },
  cancelling: { ja: "取り消しています…", en: "Cancelling…" },
  cancelNo: { ja: "取り消さない", en: "No, keep it" },
  cancelledTitle: { ja: "予約を取り消しました", en: "Your booking is cancelled" },
  cancelledLead: { ja: "またのご利用をお待ちしています。", en: "You are welcome to book again at any time." },
  bookAgain: { ja: "新しく予約する", en: "Make a new booking" },
  slotTaken: { ja: "選んだ時間は、ほかの方の予約で満員になりました。空いている時間を選び直してください。",
               en: "The time you chose has just been filled by other bookings. Please choose another time." },
  dayTaken: { ja: "選んだ日は、ほかの方の予約で満員になりました。別の日を選んでください。",
              en: "The day you chose has just been filled. Please choose another day." },
  goneBooking: { ja: "この予約は見つかりません。取り消された可能性があります。", en: "This booking no longer exists; it may have been cancelled." },
  errNetwork: { ja: "サーバーに接続できませんでした。通信状態をご確認のうえ、もう一度お試しください。",
                en: "The server could not be reached. Please check your connection and try again." },
  errBusy: { ja: "ただいま混み合っています。少し待ってから、もう一度お試しください。", en: "The service is busy. Please wait a moment and try again." },
  errGeneric: { ja: "処理できませんでした。もう一度お試しください。", en: "Something went wrong. Please try again." },
  errLoad: { ja: "予約の画面を準備できませんでした。", en: "The booking page could not be loaded." },
  unknownSite: { ja: "この窓口はありません。", en: "There is no such office." },
  retry: { ja: "もう一度", en: "Try again" },
  footer: { ja: "お名前・連絡先などの個人情報はお預かりしません。", en: "We never ask for your name or contact details." },
  remindTitle: { ja: "前日にメールでお知らせ", en: "Remind me the day before by e-mail" },
  remindOptional: { ja: "任意", en: "Optional" },
  remindLabel: { ja: "メールアドレス", en: "E-mail address" },
  remindSubmit: { ja: "お知らせを申し込む", en: "Send me a reminder" },
  remindBusy: { ja: "申し込んでいます…", en: "Setting the reminder…" },
  remindAt: { ja: (w) => `${w.ja} にお送りします`, en: (w) => `We will send it at ${w.en}` },
  remindSoon: { ja: "まもなくお送りします", en: "We will send it shortly" },
  remindPrivacy: { ja: "メールアドレスはお知らせ後・ご来庁時・予約の取消時に削除します。",
                   en: "Your address is deleted after the reminder, when you check in, or if you cancel." },
  remindEmpty: { ja: "メールアドレスを入力してください。", en: "Please enter your e-mail address." },
};

const WD = {
  ja: ["日", "月", "火", "水", "木", "金", "土"],
  en: ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"],
  enLong: ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"],
};
const MONTHS_EN = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------
const other = () => (B.lang === "ja" ? "en" : "ja");

/** Bilingual text: the page's language first, the other beside it, smaller. `o` is {ja, en}. */
function bi(o) {
  const p = B.lang, s = other();
  const a = o?.[p] ?? o?.ja ?? "", b = o?.[s] ?? "";
  return `<span class="pri" lang="${p}">${esc(a)}</span>` + (b && b !== a ? ` <span class="sec" lang="${s}">${esc(b)}</span>` : "");
}
/** {ja, en} from a pair of functions and their arguments. */
const tf = (o, ...args) => ({ ja: o.ja(...args), en: o.en(...args) });
/** One language only (labels for assistive technology). */
const one = (o) => o?.[B.lang] ?? o?.ja ?? "";

function withTimeout(promise, ms = REQUEST_TIMEOUT_MS) {
  return Promise.race([promise, new Promise((_, reject) => setTimeout(
    () => reject(new ApiError(0, "timeout", "応答がありません / no answer from the server")), ms))]);
}

/** A code as a resident may type it: full-width forms folded, upper case, hyphens and spaces dropped. */
function normalizeCode(typed) {
  return String(typed ?? "").normalize("NFKC").toUpperCase().replace(/[\s\-‐‑–—―ーｰ－_]/g, "");
}
const validCode = (c) => c.length === CODE_LEN && [...c].every((ch) => CODE_ALPHABET.includes(ch));
/** "ABCD-EFGH". */
const formatCode = (c) => (c.length > 4 ? `${c.slice(0, 4)}-${c.slice(4)}` : c);

/** `date` ("2026-12-08") plus `n` days. */
function addDays(date, n) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}
/** 0 (Sunday) to 6. */
function weekdayOf(date) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d)).getUTCDay();
}
/** {ja: "12月8日（火）", en: "Tue, Dec 8"}. */
function dateLabel(date) {
  const [, m, d] = date.split("-").map(Number);
  const wd = weekdayOf(date);
  return { ja: `${m}月${d}日（${WD.ja[wd]}）`, en: `${WD.en[wd]}, ${MONTHS_EN[m - 1]} ${d}` };
}
/** The site's local time written in an RFC 3339 string: "9:05". */
function hm(t) {
  const w = wallClock(t);
  return w ? `${w.hour}:${String(w.minute).padStart(2, "0")}` : "";
}
/** {ja: "9:00〜9:30", en: "9:00–9:30"}. */
const rangeText = (start, end) => ({ ja: `${hm(start)}〜${hm(end)}`, en: `${hm(start)}–${hm(end)}` });
/** A slot's day and time: {ja: "12月8日（火） 9:00〜9:30", en: "Tue, Dec 8, 9:00–9:30"}. */
function whenText(start, end) {
  const d = dateLabel(wallClock(start)?.date || "");
  const r = rangeText(start, end);
  return { ja: `${d.ja} ${r.ja}`, en: `${d.en}, ${r.en}` };
}
const checkInText = (r) => tf(T.checkIn, hm(r.check_in_from), hm(r.check_in_until));

const sitePath = () => `/api/v1/sites/${encodeURIComponent(SITE)}`;
const procs = () => B.catalog?.procedures || [];
const today = () => todayAt(B.catalog?.site?.timezone);

/** What to tell a resident about a failed request, as {ja, en}. */
function errorText(e) {
  if (!(e instanceof ApiError) || e.status === 0) return T.errNetwork;
  if (e.status === 429 || e.status === 503) return T.errBusy;
  if (e.status >= 500) return T.errGeneric;
  // The server's messages are "日本語 / English".
  const i = String(e.message || "").indexOf(" / ");
  if (i > 0) return { ja: e.message.slice(0, i), en: e.message.slice(i + 3) };
  return T.errGeneric;
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------
/** A new step: its view, the notice given (others are cleared), focus on its heading. */
function go(step, notice = null) {
  B.step = step;
  B.notice = notice;
  render();
  scrollTo(0, 0);
  $("step-title")?.focus({ preventScroll: true });
}

function render() {
  document.documentElement.lang = B.lang;
  document.body.dataset.step = B.step;
  document.body.dataset.lang = B.lang;
  const c = B.catalog;
  $("site-name").innerHTML = c ? bi(c.site.name) : "";
  $("app-name").innerHTML = bi(T.app);
  document.title = `${one(T.app)} — ${c ? one(c.site.name) : SITE}`;
  const lb = $("lang");
  lb.textContent = T.langBtn[B.lang];
  lb.lang = other();
  lb.setAttribute("aria-label", B.lang === "ja" ? "English / 英語で表示" : "日本語 / Japanese");
  const views = {
    loading: viewLoading, events: viewEvents, questions: viewQuestions, plan: viewPlan, days: viewDays,
    slots: viewSlots, confirm: viewConfirm, done: viewDone, lookup: viewLookup, manage: viewManage,
    cancel: viewCancel, cancelled: viewCancelled, failed: viewFailed,
  };
  main.innerHTML = (views[B.step] || viewLoading)();
  main.setAttribute("aria-busy", String(B.step === "loading"));
  $("foot").innerHTML = bi(T.footer);
  const qr = $("qr");
  if (qr) {
    // The QR code is shown once it has loaded (a server without it shows the code alone).
    const show = () => { if (qr.naturalWidth > 0) $("qr-box").hidden = false; };
    qr.addEventListener("load", show);
    if (qr.complete) show();
  }
}

function title(o) {
  return `<h1 id="step-title" class="bk-title" tabindex="-1">${bi(o)}</h1>`;
}

function noticeHtml() {
  const n = B.notice;
  if (!n) return "";
  return `<div id="notice" class="bk-notice" data-kind="${esc(n.kind)}" role="${n.kind === "error" ? "alert" : "status"}">${bi(n.text)}</div>`;
}

const backBtn = (go = "back") => `<button type="button" class="bk-btn" data-go="${go}">← ${bi(T.back)}</button>`;

function planList(codes, id = "plan") {
  const items = codes.map((c) => `<li data-procedure="${esc(c)}">${bi(nameOf(procs(), c))}</li>`).join("");
  return `<ul class="bk-plan" id="${id}">${items}</ul>`;
}

function viewLoading() {
  return `<p class="bk-loading">${bi(T.loading)}</p>`;
}

function viewFailed() {
  return `${title(T.errLoad)}${noticeHtml()}
    <button type="button" class="bk-btn primary" id="reload">${bi(T.retry)}</button>`;
}

function viewEvents() {
  const buttons = (B.catalog.life_events || []).map((le) =>
    `<li><button type="button" class="bk-btn bk-event" data-life-event="${esc(le.id)}">${bi(eventName(le))}</button></li>`).join("");
  return `${title(T.chooseTitle)}${noticeHtml()}
    <p class="bk-lead">${bi(T.chooseLead)}</p>
    <ul class="bk-events" id="events">${buttons}</ul>
    <section class="bk-manage" aria-labelledby="manage-head">
      <h2 id="manage-head">${bi(T.manageLead)}</h2>
      <button type="button" class="bk-btn" id="manage-start">${bi(T.manageTitle)}</button>
    </section>`;
}

function viewQuestions() {
  const le = B.event, qs = le.questions, q = qs[B.qIndex];
  const prev = B.answers[q.id];
  return `<p class="bk-chip">${bi(eventName(le))}</p>
    <p class="bk-progress">${esc(one(T.question))} ${B.qIndex + 1} / ${qs.length}</p>
    <h1 id="step-title" class="bk-title bk-question" tabindex="-1" data-question="${esc(q.id)}">${bi(q.text)}</h1>
    ${noticeHtml()}
    <div class="bk-answers">
      <button type="button" class="bk-btn bk-answer yes" data-answer="yes" aria-pressed="${prev === true}">${bi(T.yes)}</button>
      <button type="button" class="bk-btn bk-answer no" data-answer="no" aria-pressed="${prev === false}">${bi(T.no)}</button>
    </div>
    <div class="bk-actions">${backBtn()}</div>`;
}

function viewPlan() {
  // Whether it can be booked comes first (not bookable: said before the list); the way on after it.
  let status = "", next = "";
  if (B.bookable === true) {
    next = `<button type="button" class="bk-btn primary" id="to-days">${bi(T.toDays)} →</button>`;
  } else if (B.bookable === false) {
    status = `<div class="bk-notice" id="not-bookable" data-kind="info" role="status">${bi(B.siteBooks ? T.notBookable : T.noBookings)}</div>`;
    next = `<a class="bk-link" href="/public/congestion/${encodeURIComponent(SITE)}${B.lang === "en" ? "?lang=en" : ""}">${bi(T.congestion)}</a>`;
  } else if (B.bookable === "error") {
    next = `<button type="button" class="bk-btn primary" id="probe-retry">${bi(T.retry)}</button>`;
  } else {
    status = `<p class="bk-loading" id="checking" role="status">${bi(T.checking)}</p>`;
  }
  return `${title(T.planTitle)}
    <p class="bk-chip">${bi(eventName(B.event))}</p>
    ${noticeHtml()}
    ${status}
    <p class="bk-lead">${bi(T.planLead)}</p>
    ${planList(B.plan)}
    ${next}
    <div class="bk-actions">${backBtn()}<button type="button" class="bk-btn" data-go="restart">${bi(T.restart)}</button></div>`;
}

/** The days of the next four weeks from today, Monday first. */
function horizon() {
  const first = today();
  return Array.from({ length: HORIZON_DAYS }, (_, i) => addDays(first, i));
}

const dayKey = (date) => `${B.queue}|${date}`;
const MARK = { open: "○", full: "×", closed: "休", loading: "…", error: "?" };
const DAY_TEXT = { open: T.open, full: T.full, closed: T.closed, loading: T.loadingDay, error: T.dayError };

function dayCell(date) {
  const entry = B.days.get(dayKey(date)) || { state: "loading" };
  const label = dateLabel(date);
  const [, m, d] = date.split("-").map(Number);
  const first = date === today() || d === 1;
  const state = entry.state;
  const wd = weekdayOf(date);
  return `<button type="button" class="bk-day" data-date="${date}" data-day-state="${state}" data-weekday="${wd}"
      ${state === "open" ? "" : "disabled"} aria-label="${esc(`${one(label)} ${one(DAY_TEXT[state])}`)}"
      ${B.date === date ? `aria-current="date"` : ""}>
      <span class="d">${first ? `${m}/` : ""}${d}</span><span class="m" aria-hidden="true">${MARK[state]}</span></button>`;
}

function viewDays() {
  const days = horizon();
  // Monday first: blanks before today's weekday, and after the last day.
  const lead = (weekdayOf(days[0]) + 6) % 7;
  const cells = [...Array(lead).fill(null), ...days];
  while (cells.length % 7) cells.push(null);
  const rows = [];
  for (let i = 0; i < cells.length; i += 7) {
    rows.push(`<tr>${cells.slice(i, i + 7).map((d) => `<td>${d ? dayCell(d) : ""}</td>`).join("")}</tr>`);
  }
  const head = [1, 2, 3, 4, 5, 6, 0].map((wd) =>
    `<th scope="col" abbr="${esc(B.lang === "ja" ? WD.ja[wd] + "曜日" : WD.enLong[wd])}">${esc(B.lang === "ja" ? WD.ja[wd] : WD.en[wd])}</th>`).join("");
  const caption = tf(T.range, one(dateLabel(days[0])), one(dateLabel(days[days.length - 1])));
  const failed = days.some((d) => B.days.get(dayKey(d))?.state === "error");
  const legend = ["open", "full", "closed"].map((s) =>
    `<li><span class="bk-mark" data-day-state="${s}" aria-hidden="true">${MARK[s]}</span>${bi(DAY_TEXT[s])}</li>`).join("");
  return `${title(B.mode === "move" ? T.moveDaysTitle : T.daysTitle)}
    ${noticeHtml()}
    <p class="bk-lead">${bi(T.daysLead)}</p>
    <table class="bk-cal" id="calendar"><caption>${esc(caption[B.lang])}</caption>
      <thead><tr>${head}</tr></thead><tbody>${rows.join("")}</tbody></table>
    <ul class="bk-legend">${legend}</ul>
    ${failed ? `<button type="button" class="bk-btn" id="reload-days">${bi(T.reloadDays)}</button>` : ""}
    <div class="bk-actions">${backBtn()}</div>`;
}

function isCurrent(slot) {
  return B.mode === "move" && B.reservation && Date.parse(slot.start) === Date.parse(B.reservation.slot_start);
}

function viewSlots() {
  const entry = B.days.get(dayKey(B.date)) || { state: "loading", slots: [] };
  const now = Date.now();
  const slots = (entry.slots || []).filter((s) => Date.parse(s.start) > now);
  let list;
  if (entry.state === "loading") list = `<p class="bk-loading">${bi(T.loading)}</p>`;
  else if (entry.state === "error") list = `<p class="bk-empty">${bi(T.errNetwork)}</p>`;
  else if (!slots.some((s) => s.free > 0)) list = `<p class="bk-empty">${bi(T.noSlots)}</p>`;
  else {
    list = `<ul class="bk-slots" id="slots">${slots.map((s) => {
      const current = isCurrent(s);
      const free = s.free > 0 && !current;
      const tag = current ? T.currentSlot : s.free > 0 ? tf(T.left, s.free) : T.slotFull;
      return `<li><button type="button" class="bk-btn bk-slot" data-slot="${esc(s.start)}" data-free="${s.free}"
          ${free ? "" : "disabled"}${current ? ` aria-current="true"` : ""}>
          <span class="t num">${esc(rangeText(s.start, s.end)[B.lang])}</span>
          <span class="f">${bi(tag)}</span></button></li>`;
    }).join("")}</ul>`;
  }
  return `${title(T.slotsTitle)}
    <p class="bk-chip" id="chosen-day">${bi(dateLabel(B.date))}</p>
    ${noticeHtml()}
    <p class="bk-lead">${bi(T.slotsLead)}</p>
    ${list}
    <div class="bk-actions"><button type="button" class="bk-btn" data-go="back">← ${bi(T.otherDay)}</button></div>`;
}

function viewConfirm() {
  const s = B.slot;
  const moving = B.mode === "move";
  const r = B.reservation;
  const rows = moving
    ? `<dt>${bi(T.before)}</dt><dd>${bi(whenText(r.slot_start, r.slot_end))}</dd>
       <dt>${bi(T.after)}</dt><dd id="confirm-when">${bi(whenText(s.start, s.end))}</dd>`
    : `<dt>${bi(T.when)}</dt><dd id="confirm-when">${bi(whenText(s.start, s.end))}</dd>
       <dt>${bi(T.purpose)}</dt><dd>${bi(eventName(B.event))}</dd>`;
  const id = moving ? "move-confirm" : "book";
  const label = moving ? (B.busy ? T.moving : T.move) : (B.busy ? T.booking : T.book);
  return `${title(moving ? T.moveConfirmTitle : T.confirmTitle)}
    ${noticeHtml()}
    <dl class="bk-facts">${rows}</dl>
    <h2 class="bk-sub">${bi(T.procedures)}</h2>
    ${planList(moving ? r.procedures : B.plan)}
    <p class="bk-privacy">${bi(T.privacy)}</p>
    <button type="button" class="bk-btn primary" id="${id}" aria-busy="${B.busy}" ${B.busy ? "disabled" : ""}>${bi(label)}</button>
    <div class="bk-actions">${backBtn()}</div>`;
}

/** The booking card: the code, the time, the check-in window, the QR code. */
function bookingCard(r) {
  const code = formatCode(r.code);
  const qr = `${sitePath()}/reservations/${encodeURIComponent(r.code)}/qr.svg`;
  return `<div class="bk-card">
      <p class="bk-code-label">${bi(T.code)}</p>
      <p class="bk-code num" id="code" data-code="${esc(r.code)}" aria-label="${esc(`${one(T.code)} ${[...r.code].join(" ")}`)}">${esc(code)}</p>
      <p class="bk-when" id="when" data-start="${esc(r.slot_start)}">${bi(whenText(r.slot_start, r.slot_end))}</p>
      <p class="bk-checkin" id="check-in" data-from="${esc(r.check_in_from)}" data-until="${esc(r.check_in_until)}">${bi(checkInText(r))}</p>
      <p class="bk-small">${bi(T.lateNote)}</p>
      <figure class="bk-qr" id="qr-box" hidden>
        <img id="qr" src="${esc(qr)}" width="180" height="180" alt="${esc(one(tf(T.qrAlt, code)))}">
        <figcaption>${bi(T.qrCaption)}</figcaption>
      </figure>
    </div>`;
}

function viewDone() {
  const r = B.reservation;
  return `${title(B.moved ? T.movedTitle : T.doneTitle)}
    ${noticeHtml()}
    ${bookingCard(r)}
    <p class="bk-keep">${bi(T.keepCode)}</p>
    ${remindHtml(r)}
    <p class="bk-privacy" id="privacy">${bi(T.privacy)}</p>
    <h2 class="bk-sub">${bi(T.procedures)}</h2>
    ${planList(r.procedures)}
    <div class="bk-actions column">
      <button type="button" class="bk-btn" id="manage-this">${bi(T.manageThis)}</button>
      <button type="button" class="bk-btn" data-go="restart">${bi(T.restart)}</button>
    </div>`;
}

/** The reminder of booking `r`: which booking (and slot) the state in `B.remind` is about. */
const remindKey = (r) => `${r.code}|${r.slot_start}`;

/** {ja: "12月7日（月） 17:00", en: "Mon, Dec 7, 17:00"}: the site's local time written in `t`. */
function dayTimeText(t) {
  const w = wallClock(t);
  if (!w) return { ja: String(t ?? ""), en: String(t ?? "") };
  const d = dateLabel(w.date);
  return { ja: `${d.ja} ${hm(t)}`, en: `${d.en}, ${hm(t)}` };
}

/** The optional day-before e-mail on the done step (nothing where the city sends none). */
function remindHtml(r) {
  if (!B.remindOffered) return "";
  const m = B.remind.key === remindKey(r) ? B.remind : { state: "idle", email: "", at: null, error: null };
  const head = `<h2 class="bk-sub" id="remind-head">${bi(T.remindTitle)}</h2>`;
  if (m.state === "set") {
    const soon = Date.parse(m.at) <= Date.now();
    return `<section class="bk-remind" id="remind" data-state="set" aria-labelledby="remind-head">${head}
      <p class="bk-remind-at" id="remind-at" data-remind-at="${esc(m.at)}" role="status">${bi(soon ? T.remindSoon : tf(T.remindAt, dayTimeText(m.at)))}</p>
      <p class="bk-small">${bi(T.remindPrivacy)}</p>
    </section>`;
  }
  const busy = m.state === "busy";
  return `<section class="bk-remind" id="remind" data-state="${busy ? "busy" : "idle"}" aria-labelledby="remind-head">${head}
    <form id="remind-form" class="bk-form" novalidate>
      <label for="remind-email">${bi(T.remindLabel)} <span class="bk-optional">${bi(T.remindOptional)}</span></label>
      <input id="remind-email" name="email" type="email" class="bk-remind-input" value="${esc(m.email)}" autocomplete="email"
        inputmode="email" autocapitalize="off" spellcheck="false" maxlength="254" enterkeyhint="send" ${busy ? "disabled" : ""}>
      ${m.error ? `<div class="bk-notice" id="remind-error" data-kind="error" role="alert">${bi(m.error)}</div>` : ""}
      <button type="submit" class="bk-btn" id="remind-submit" aria-busy="${busy}" ${busy ? "disabled" : ""}>${bi(busy ? T.remindBusy : T.remindSubmit)}</button>
      <p class="bk-small">${bi(T.remindPrivacy)}</p>
    </form>
  </section>`;
}

function viewLookup() {
  return `${title(T.manageTitle)}
    ${noticeHtml()}
    <form id="lookup-form" class="bk-form" autocomplete="off" novalidate>
      <label for="lookup-code">${bi(T.lookupLabel)}</label>
      <input id="lookup-code" name="code" class="bk-input num" value="${esc(B.lookupCode)}" autocomplete="off"
        autocapitalize="characters" spellcheck="false" maxlength="20" aria-describedby="lookup-hint" enterkeyhint="go">
      <p class="bk-small" id="lookup-hint">${bi(T.lookupHint)}</p>
      <button type="submit" class="bk-btn primary" id="lookup-submit" aria-busy="${B.busy}" ${B.busy ? "disabled" : ""}>${bi(B.busy ? T.looking : T.lookup)}</button>
    </form>
    <div class="bk-actions"><button type="button" class="bk-btn" data-go="restart">← ${bi(T.back)}</button></div>`;
}

function viewManage() {
  const r = B.reservation;
  const le = r.life_event ? (B.catalog.life_events || []).find((e) => e.id === r.life_event) : null;
  return `${title(T.bookingTitle)}
    ${noticeHtml()}
    ${bookingCard(r)}
    ${le ? `<p class="bk-chip">${bi(eventName(le))}</p>` : ""}
    <h2 class="bk-sub">${bi(T.procedures)}</h2>
    ${planList(r.procedures)}
    <div class="bk-actions column">
      <button type="button" class="bk-btn primary" id="change">${bi(T.change)}</button>
      <button type="button" class="bk-btn danger" id="cancel">${bi(T.cancel)}</button>
      <button type="button" class="bk-btn" data-go="restart">${bi(T.restart)}</button>
    </div>`;
}

function viewCancel() {
  const r = B.reservation;
  return `${title(T.cancelTitle)}
    ${noticeHtml()}
    <dl class="bk-facts">
      <dt>${bi(T.code)}</dt><dd class="num">${esc(formatCode(r.code))}</dd>
      <dt>${bi(T.when)}</dt><dd>${bi(whenText(r.slot_start, r.slot_end))}</dd>
    </dl>
    <p class="bk-lead">${bi(T.cancelLead)}</p>
    <div class="bk-actions column">
      <button type="button" class="bk-btn danger" id="cancel-yes" aria-busy="${B.busy}" ${B.busy ? "disabled" : ""}>${bi(B.busy ? T.cancelling : T.cancelYes)}</button>
      <button type="button" class="bk-btn" id="cancel-no">${bi(T.cancelNo)}</button>
    </div>`;
}

function viewCancelled() {
  const r = B.reservation;
  return `${title(T.cancelledTitle)}
    ${noticeHtml()}
    <p class="bk-code num bk-gone" id="cancelled-code">${esc(formatCode(r.code))}</p>
    <p class="bk-lead">${bi(T.cancelledLead)}</p>
    <button type="button" class="bk-btn primary" data-go="restart">${bi(T.bookAgain)}</button>`;
}

// ---------------------------------------------------------------------------------------------
// Booking
// ---------------------------------------------------------------------------------------------
function restart() {
  B.event = null; B.qIndex = 0; B.answers = {}; B.plan = []; B.queue = null; B.bookable = null;
  B.date = null; B.slot = null; B.mode = "book"; B.reservation = null; B.moved = false; B.busy = false;
  go("events");
}

function chooseEvent(id) {
  const le = (B.catalog.life_events || []).find((e) => e.id === id);
  if (!le) return;
  B.event = le; B.answers = {}; B.qIndex = 0; B.mode = "book";
  if ((le.questions || []).length) go("questions"); else toPlan();
}

function answer(yes) {
  const q = B.event.questions[B.qIndex];
  B.answers[q.id] = yes;
  if (B.qIndex + 1 < B.event.questions.length) { B.qIndex++; go("questions"); }
  else toPlan();
}

function toPlan() {
  B.plan = visitPlan(B.event, B.answers);
  B.queue = routeQueue(B.catalog, B.plan);
  B.bookable = null;
  go("plan");
  void probe();
}

/** Whether the plan's queue takes bookings: its slots of today (kept for the calendar), or
 *  422 `not_bookable`; 404 `no_reservations` when the site takes none. */
async function probe() {
  const queue = B.queue;
  if (!queue) { B.bookable = false; render(); return; }
  let bookable;
  let notice = null;
  try {
    await loadDay(today(), { queue, strict: true });
    bookable = true;
  } catch (e) {
    if (e instanceof ApiError && (e.code === "not_bookable" || e.code === "no_reservations")) {
      bookable = false;
      B.siteBooks = e.code !== "no_reservations";
    } else {
      bookable = "error";
      notice = { kind: "error", text: errorText(e) };
    }
  }
  if (B.step !== "plan" || B.queue !== queue) return;
  B.bookable = bookable;
  B.notice = notice;
  render();
}

/** A day's slots of the plan's queue, read once (again with `force`). `strict`: a failure throws. */
async function loadDay(date, { queue = B.queue, force = false, strict = false } = {}) {
  const key = `${queue}|${date}`;
  const have = B.days.get(key);
  if (have && !force && have.state !== "error" && have.state !== "loading") return have;
  if (!have || have.state === "error") B.days.set(key, { state: "loading", slots: have?.slots || [] });
  try {
    const reply = await withTimeout(api("GET",
      `${sitePath()}/reservations/slots?date=${date}&queue=${encodeURIComponent(queue)}`));
    const slots = (reply.slots || []).filter((s) => s.queue === queue);
    // A day without slots, or whose slots have all begun, takes no bookings; one whose slots
    // to come have no place left is full.
    const now = Date.now();
    const ahead = slots.filter((s) => Date.parse(s.start) > now);
    const state = !ahead.length ? "closed" : ahead.some((s) => s.free > 0) ? "open" : "full";
    const entry = { state, slots };
    B.days.set(key, entry);
    return entry;
  } catch (e) {
    B.days.set(key, { state: "error", slots: [] });
    if (strict) throw e;
    return B.days.get(key);
  }
}

/** Fills in the calendar: every day of the horizon, a few at a time, each cell as it comes. */
async function loadDays(force = false) {
  const queue = B.queue;
  const todo = horizon().filter((d) => force || !["open", "full", "closed"].includes(B.days.get(`${queue}|${d}`)?.state));
  for (const d of todo) B.days.set(`${queue}|${d}`, { state: "loading", slots: [] });
  if (B.step === "days") render();
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const date = todo[next++];
      await loadDay(date, { queue, force: true });
      if (B.step !== "days" || B.queue !== queue) continue;
      const cell = main.querySelector(`[data-date="${date}"]`);
      if (cell) cell.outerHTML = dayCell(date);
    }
  };
  await Promise.all(Array.from({ length: PARALLEL }, worker));
  if (B.step === "days" && B.queue === queue && todo.some((d) => B.days.get(`${queue}|${d}`)?.state === "error")) {
    // Show the "load again" button.
    render();
  }
}

function toDays(notice = null) {
  go("days", notice);
  void loadDays();
}

async function chooseDay(date) {
  B.date = date;
  go("slots");
  const entry = B.days.get(dayKey(date));
  if (!entry || entry.state === "loading" || entry.state === "error") {
    await loadDay(date, { force: true });
    if (B.step === "slots" && B.date === date) render();
  }
}

function chooseSlot(start) {
  const entry = B.days.get(dayKey(B.date));
  const slot = entry?.slots.find((s) => s.start === start);
  if (!slot) return;
  B.slot = slot;
  go("confirm");
}

/** The slot went while the resident looked at it: read the day again and send them back to it. */
async function slotTaken() {
  const entry = await loadDay(B.date, { force: true });
  if (entry.state === "open") go("slots", { kind: "error", text: T.slotTaken });
  else toDays({ kind: "error", text: T.dayTaken });
}

async function book() {
  if (B.busy) return;
  const body = { life_event: B.event.id, answers: {}, slot: B.slot.start };
  for (const q of B.event.questions || []) body.answers[q.id] = B.answers[q.id] === true;
  await send(() => api("POST", `${sitePath()}/reservations`, { body }), (reply) => {
    B.reservation = reply.reservation;
    B.moved = false;
    B.days.delete(dayKey(B.date));
    go("done");
  });
}

async function move() {
  if (B.busy) return;
  const code = B.reservation.code;
  await send(() => api("PUT", `${sitePath()}/reservations/${encodeURIComponent(code)}`, { body: { slot: B.slot.start } }),
    (reply) => {
      B.reservation = reply.reservation;
      B.moved = true;
      B.mode = "book";
      B.days.clear();
      go("done");
    });
}

/** Runs a booking or a move: the button busy meanwhile, the refusals explained. */
async function send(request, onDone) {
  B.busy = true;
  render();
  let reply;
  try {
    reply = await withTimeout(request());
  } catch (e) {
    B.busy = false;
    if (e instanceof ApiError && (e.code === "slot_full" || e.code === "no_such_slot")) return slotTaken();
    if (e instanceof ApiError && e.code === "not_bookable") {
      B.bookable = false;
      return go("plan");
    }
    if (e instanceof ApiError && e.code === "reservation_not_found") {
      B.lookupCode = B.reservation ? formatCode(B.reservation.code) : "";
      return go("lookup", { kind: "error", text: T.goneBooking });
    }
    B.notice = { kind: "error", text: errorText(e) };
    render();
    return;
  }
  B.busy = false;
  onDone(reply);
}

/** Asks for the booking's reminder the day before: its time shown, errors under the field; the
 *  whole offer goes where the city sends no e-mail. */
async function remind(ev) {
  ev?.preventDefault();
  const r = B.reservation;
  if (!r || B.step !== "done") return;
  const key = remindKey(r);
  const m = B.remind.key === key ? B.remind : { key, state: "idle", email: "", at: null, error: null };
  if (m.state === "busy") return;
  const email = ($("remind-email")?.value ?? m.email).trim();
  B.remind = { ...m, key, email, error: null };
  if (!email) {
    B.remind.error = T.remindEmpty;
    render();
    $("remind-email")?.focus();
    return;
  }
  B.remind.state = "busy";
  render();
  let reply = null, failure = null;
  try {
    reply = await withTimeout(api("POST", `${sitePath()}/reservations/${encodeURIComponent(r.code)}/reminder`,
      { body: { email, lang: B.lang } }));
  } catch (e) {
    failure = e;
  }
  if (B.remind.key !== key) return;
  if (reply?.remind_at) {
    B.remind = { key, state: "set", email: "", at: reply.remind_at, error: null };
  } else if (failure instanceof ApiError && failure.code === "no_notices") {
    B.remindOffered = false;
    B.remind = { key: "", state: "idle", email: "", at: null, error: null };
  } else {
    const gone = failure instanceof ApiError && failure.code === "reservation_not_found";
    B.remind = { key, state: "idle", email, at: null, error: gone ? T.goneBooking : errorText(failure) };
  }
  if (B.step !== "done") return;
  render();
  if (B.remind.error) $("remind-email")?.focus();
}

// ---------------------------------------------------------------------------------------------
// A booking by its code: read, move, cancel
// ---------------------------------------------------------------------------------------------
async function lookup(ev) {
  ev?.preventDefault();
  if (B.busy) return;
  B.lookupCode = $("lookup-code")?.value || "";
  const code = normalizeCode(B.lookupCode);
  if (!validCode(code)) {
    B.notice = { kind: "error", text: code.length === CODE_LEN ? T.codeNotFound : T.codeShort };
    render();
    $("lookup-code")?.focus();
    return;
  }
  B.busy = true;
  render();
  try {
    const reply = await withTimeout(api("GET", `${sitePath()}/reservations/${encodeURIComponent(code)}`));
    B.busy = false;
    B.reservation = reply.reservation;
    B.lookupCode = "";
    go("manage");
  } catch (e) {
    B.busy = false;
    const missing = e instanceof ApiError && e.status === 404 && e.code !== "no_reservations";
    B.notice = { kind: "error", text: missing ? T.codeNotFound : errorText(e) };
    render();
    $("lookup-code")?.focus();
  }
}

function startMove() {
  const r = B.reservation;
  B.mode = "move";
  B.days.clear();
  B.queue = r.queue;
  B.plan = r.procedures;
  B.date = null;
  B.slot = null;
  toDays();
}

async function cancelBooking() {
  if (B.busy) return;
  B.busy = true;
  render();
  try {
    await withTimeout(api("DELETE", `${sitePath()}/reservations/${encodeURIComponent(B.reservation.code)}`));
    B.busy = false;
    B.days.clear();
    go("cancelled");
  } catch (e) {
    B.busy = false;
    if (e instanceof ApiError && e.code === "reservation_not_found") {
      go("lookup", { kind: "error", text: T.goneBooking });
      return;
    }
    B.notice = { kind: "error", text: errorText(e) };
    render();
  }
}

// ---------------------------------------------------------------------------------------------
// Navigation
// ---------------------------------------------------------------------------------------------
function back() {
  switch (B.step) {
    case "questions":
      if (B.qIndex > 0) { B.qIndex--; go("questions"); } else restart();
      return;
    case "plan": {
      const n = (B.event?.questions || []).length;
      if (n) { B.qIndex = n - 1; go("questions"); } else restart();
      return;
    }
    case "days":
      if (B.mode === "move") go("manage"); else go("plan");
      return;
    case "slots": toDays(); return;
    case "confirm": go("slots"); return;
    default: restart();
  }
}

function setLang(lang) {
  B.lang = lang;
  const url = new URL(location.href);
  if (lang === "en") url.searchParams.set("lang", "en"); else url.searchParams.delete("lang");
  history.replaceState(null, "", url.pathname + url.search);
  render();
}

document.addEventListener("click", (ev) => {
  const btn = ev.target.closest("button");
  if (!btn || btn.disabled) return;
  if (btn.id === "lang") return setLang(B.lang === "ja" ? "en" : "ja");
  if (btn.dataset.lifeEvent) return chooseEvent(btn.dataset.lifeEvent);
  if (btn.dataset.answer) return answer(btn.dataset.answer === "yes");
  if (btn.dataset.date) return void chooseDay(btn.dataset.date);
  if (btn.dataset.slot) return chooseSlot(btn.dataset.slot);
  switch (btn.id) {
    case "to-days": return toDays();
    case "probe-retry": B.bookable = null; B.notice = null; render(); return void probe();
    case "reload-days": return void loadDays(true);
    case "book": return void book();
    case "move-confirm": return void move();
    case "manage-start": B.lookupCode = ""; return go("lookup");
    case "manage-this": B.mode = "book"; return go("manage");
    case "change": return startMove();
    case "cancel": return go("cancel");
    case "cancel-yes": return void cancelBooking();
    case "cancel-no": return go("manage");
    case "reload": return void start();
  }
  switch (btn.dataset.go) {
    case "back": return back();
    case "restart": return restart();
  }
});
document.addEventListener("submit", (ev) => {
  if (ev.target.id === "lookup-form") void lookup(ev);
  else if (ev.target.id === "remind-form") void remind(ev);
});
// The address being typed survives a redraw (the language button).
document.addEventListener("input", (ev) => {
  if (ev.target.id !== "remind-email" || !B.reservation) return;
  const key = remindKey(B.reservation);
  if (B.remind.key !== key) B.remind = { key, state: "idle", email: "", at: null, error: null };
  B.remind.email = ev.target.value;
  // Being corrected: the error goes.
  if (B.remind.error) {
    B.remind.error = null;
    $("remind-error")?.remove();
  }
});

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------
async function start() {
  go("loading");
  try {
    B.catalog = await withTimeout(loadCatalog(SITE));
  } catch (e) {
    const unknown = e instanceof ApiError && e.status === 404;
    go("failed", { kind: "error", text: unknown ? T.unknownSite : errorText(e) });
    return;
  }
  // `?code=…` (a saved link) opens that booking.
  const code = normalizeCode(PARAMS.get("code") || "");
  if (validCode(code)) {
    B.lookupCode = formatCode(code);
    go("lookup");
    void lookup();
    return;
  }
  go("events");
}

render();
void start();
