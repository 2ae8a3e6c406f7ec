// The counter console (/screens/counter/{site}?counter=ID): call, recall, start, no-show, transfer,
// complete; the visit plan of the current ticket. Needs a counter (or floor) token on the device.
import { api, loadCatalog, esc, waitText, clock, nameOf, siteFromPath, say, errorText, bilingual, elapsed,
  ConsoleShell } from "/assets/common.js";

const SITE = siteFromPath();
const SITE_Q = encodeURIComponent(SITE);
const $ = (id) => document.getElementById(id);

const C = {
  catalog: null,
  board: null,
  counterId: new URLSearchParams(location.search).get("counter") || "",
  counter: null,        // {state, profile} as last known (action reply, GET counter, catalog + board)
  current: undefined,   // the counter's current ticket {number, status, since} or null; undefined = unknown
  shown: null,          // the full ticket shown (current, or the last one handled)
  sinceOverride: null,  // when the board has not caught up yet
  busy: false,
  fetching: null,
  feed: null,
};

const STATUS_TEXT = {
  waiting: "待機中 / Waiting", called: "呼出中 / Called", serving: "対応中 / Serving",
  done: "完了 / Done", no_show: "不在 / No-show", cancelled: "取消 / Cancelled",
};
const STRATEGY = { profile_order: "定義順 / Profile order", longest_wait: "長く待っている順 / Longest wait" };

// ---------------------------------------------------------------------------------------------
// The console shell: the token once per device (`#token=…` in the address stores it once).
// ---------------------------------------------------------------------------------------------
const shell = new ConsoleShell("counter", {
  lead: { ja: "この端末で窓口操作に使うトークンを入力してください（一度だけ）。",
          en: "Enter the counter token for this device (asked once)." },
  onToken: () => { renderShell(); if (shell.value && C.counterId) refreshCounter(); },
});
const token = () => shell.value;

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------
const sayError = (e) => say("error", errorText(e));

// ---------------------------------------------------------------------------------------------
// Data helpers
// ---------------------------------------------------------------------------------------------
const boardCounter = () => C.board?.counters?.find((c) => c.id === C.counterId) || null;
const catalogCounter = (id = C.counterId) => C.catalog?.counters?.find((c) => c.id === id) || null;
const counterState = () => C.counter?.state ?? boardCounter()?.state ?? catalogCounter()?.state ?? null;
const profile = () => C.counter?.profile ?? catalogCounter()?.profile ?? { queues: [], strategy: "profile_order" };
const ACTIVE = new Set(["called", "serving"]);

async function fetchTicket(number) {
  if (C.fetching === number) return;
  C.fetching = number;
  try {
    const r = await api("GET", `/api/v1/sites/${SITE_Q}/tickets/${encodeURIComponent(number)}`, { token: token() });
    if (r?.ticket) { C.shown = r.ticket; renderCurrent(); }
  } catch (e) {
    // Without the details (e.g. no permission) the number and status from the board still show.
    if (e.status === 401 || e.status === 403) sayError(e);
  } finally {
    if (C.fetching === number) C.fetching = null;
  }
}

/** Brings the shown ticket in line with the counter's live current ticket. */
function syncCurrent() {
  const cur = C.current;
  if (cur === undefined) return;
  if (cur) {
    if (!C.shown || C.shown.number !== cur.number || C.shown.status !== cur.status) {
      // Show what we know at once, then the full ticket (its visit plan).
      const keep = C.shown && C.shown.number === cur.number ? C.shown : { number: cur.number, procedures: null };
      C.shown = { ...keep, number: cur.number, status: cur.status };
      fetchTicket(cur.number);
    }
  } else if (C.shown && ACTIVE.has(C.shown.status)) {
    // It ended somewhere else (cancelled, another console): show its final status.
    fetchTicket(C.shown.number);
  }
}

function since() {
  const bc = boardCounter();
  if (bc?.ticket && C.current && bc.ticket.number === C.current.number && bc.ticket.status === C.current.status && bc.ticket.since) {
    return bc.ticket.since;
  }
  return C.sinceOverride || C.current?.since || null;
}

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------
function renderShell() {
  const main = $("main");
  if (shell.signIn(main)) return;
  if (!C.counterId || !catalogCounter()) {
    const list = (C.catalog?.counters || []).map((c) =>
      `<button type="button" data-choose-counter="${esc(c.id)}">${esc(c.name.ja)}<br><span class="en">${esc(c.name.en)}</span></button>`).join("");
    main.innerHTML = `<div class="card center-card" style="max-width:820px">
      <h2>窓口を選択 <span class="en">Choose your counter</span></h2>
      ${C.counterId ? `<p class="muted">窓口「${esc(C.counterId)}」はありません / No counter “${esc(C.counterId)}”.</p>` : ""}
      <div class="choose">${list || `<span class="empty">—</span>`}</div></div>`;
    return;
  }
  main.innerHTML = `<div class="layout">
    <div class="stack">
      <section class="card" aria-labelledby="cur-h">
        <div class="current">
          <div class="label" id="cur-h"></div>
          <div id="current-number" class="none">—</div>
          <div class="cur-side">
            <span id="no-ticket" class="muted">呼出中の番号はありません <span class="en">No ticket at this counter</span></span>
            <span id="current-status"></span>
            <div class="elapsed" id="elapsed"></div>
          </div>
          <div class="meta" id="meta"></div>
        </div>
      </section>
      <section class="card" aria-labelledby="plan-h">
        <h2 id="plan-h">訪問プラン（ご用意する手続き） <span class="en">Visit plan — procedures to prepare</span></h2>
        <div id="plan"></div>
      </section>
    </div>
    <div class="stack">
      <section class="card" aria-label="操作 / Actions">
        <div class="actions">
          <button type="button" class="act primary" data-action="call-next" data-key="n"><span class="l">次を呼出<kbd>N</kbd></span><span class="en">Call next</span></button>
          <button type="button" class="act" data-action="recall" data-key="r"><span class="l">再呼出<kbd>R</kbd></span><span class="en">Recall</span></button>
          <button type="button" class="act go" data-action="start" data-key="s"><span class="l">対応開始<kbd>S</kbd></span><span class="en">Start</span></button>
          <button type="button" class="act warn" data-action="no-show" data-key="x"><span class="l">不在<kbd>X</kbd></span><span class="en">No-show</span></button>
          <button type="button" class="act done" data-action="complete" data-key="c"><span class="l">完了<kbd>C</kbd></span><span class="en">Complete</span></button>
          <button type="button" class="act" data-action="transfer" data-key="t"><span class="l">転送<kbd>T</kbd></span><span class="en">Transfer</span></button>
          <button type="button" class="act" data-action="call"><span class="l">指定呼出</span><span class="en">Call a chosen ticket</span></button>
        </div>
        <div class="state-row" role="group" aria-labelledby="state-h">
          <span id="state-h" class="state-h">窓口の状態<span class="en">Counter state</span></span>
          <div class="segment">
            <button type="button" class="act" data-action="open"><span class="l">開始</span><span class="en">Open</span></button>
            <button type="button" class="act" data-action="pause"><span class="l">休止</span><span class="en">Pause</span></button>
            <button type="button" class="act" data-action="close"><span class="l">終了</span><span class="en">Close</span></button>
          </div>
        </div>
      </section>
      <section class="card" aria-labelledby="q-h">
        <h2 id="q-h">担当する列 <span class="en">Queues this counter serves</span></h2>
        <div id="queues"></div>
      </section>
    </div>
  </div>`;
  renderAll();
}

function renderAll() {
  if (!$("current-number")) return;
  renderHeader();
  renderCurrent();
  renderQueues();
  renderButtons();
}

function renderHeader() {
  const st = counterState();
  const el = $("counter-state");
  el.hidden = !st || !C.counterId;
  if (st) el.dataset.state = st;
}

function renderCurrent() {
  if (!$("current-number")) return;
  const t = C.shown;
  const active = !!C.current;
  $("cur-h").innerHTML = active || !t ? `現在の番号 <span class="en">Current ticket</span>`
                                      : `直前の番号 <span class="en">Last ticket</span>`;
  const num = $("current-number");
  num.textContent = t ? t.number : "—";
  num.classList.toggle("none", !t);
  $("no-ticket").hidden = !!t;
  const st = $("current-status");
  st.textContent = t?.status || "";
  if (t?.status) st.dataset.status = t.status; else delete st.dataset.status;
  st.title = t?.status ? STATUS_TEXT[t.status] || t.status : "";
  renderElapsed();
  const queues = C.catalog?.queues || [];
  const le = t?.life_event ? C.catalog?.life_events?.find((l) => l.id === t.life_event) : null;
  const meta = [];
  if (t?.priority) meta.push(`<span class="prio">優先 Priority</span>`);
  const m = (x) => `<span>${x}</span>`;
  if (t?.queue) meta.push(m(`列 <span class="en">Queue</span> <b>${esc(nameOf(queues, t.queue).ja)}</b>`));
  if (t?.target?.counter) meta.push(m(`宛先 <span class="en">To counter</span> <b>${esc(nameOf(C.catalog?.counters, t.target.counter).ja)}</b>`));
  if (le) meta.push(m(`用件 <span class="en">Life event</span> <b>${esc(le.name.ja)}</b>`));
  if (t?.issued_at) meta.push(m(`発券 <span class="en">Issued</span> <b>${esc(clock(t.issued_at, C.catalog?.site?.timezone))}</b>`));
  if (t?.calls) meta.push(m(`呼出 <span class="en">Calls</span> <b>${t.calls}</b>`));
  if (t?.steps > 1) meta.push(m(`<b>${t.steps}</b>番目の窓口（転送） <span class="en">step ${t.steps} (transferred)</span>`));
  $("meta").innerHTML = meta.join("");
  const plan = $("plan");
  if (!t) plan.innerHTML = `<div class="empty">呼び出すと、ここに手続きが表示されます。<span class="en">Call a ticket to see its procedures here.</span></div>`;
  else if (!t.procedures) plan.innerHTML = `<div class="empty">読み込み中… <span class="en">loading…</span></div>`;
  else {
    const procs = C.catalog?.procedures || [];
    plan.innerHTML = `<ul class="plan">${t.procedures.map((code) => {
      const n = nameOf(procs, code);
      return `<li data-procedure="${esc(code)}"><span class="ja">${esc(n.ja)}</span><span class="en">${esc(n.en)}</span></li>`;
    }).join("")}</ul><p class="plan-hint">${t.procedures.length} 件 · 申請書は職員が作成します（書かない窓口） <span class="en">${t.procedures.length} procedure(s) · staff fill in the forms</span></p>`;
  }
}

function renderElapsed() {
  const el = $("elapsed");
  if (!el) return;
  const s = C.current ? since() : null;
  if (!s) { el.innerHTML = ""; return; }
  const label = C.current.status === "serving" ? "対応開始から / since start" : "呼出から / since called";
  el.innerHTML = `${elapsed(Date.now() - new Date(s).getTime())}<span class="en">${label}</span>`;
}

function renderQueues() {
  const el = $("queues");
  if (!el) return;
  const p = profile();
  const bq = (id) => C.board?.queues?.find((q) => q.id === id);
  const rows = p.queues.map((id, i) => {
    const q = bq(id);
    const n = nameOf(C.catalog?.queues, id);
    const oldest = q?.oldest_since ? elapsed(Date.now() - new Date(q.oldest_since).getTime()) : "—";
    return `<tr data-queue="${esc(id)}"><td><span class="order">${i + 1}</span>${bilingual(n)}</td>
      <td class="n" data-waiting="${q?.waiting ?? ""}">${q ? q.waiting : "—"}</td>
      <td class="t">${q ? esc(waitText(q.estimated_wait_s, "ja")) : "—"}</td>
      <td class="t" data-oldest="${esc(q?.oldest_since || "")}">${oldest}</td></tr>`;
  }).join("");
  const direct = boardCounter()?.waiting ?? 0;
  el.innerHTML = `<table><thead><tr><th>列 / Queue</th><th style="text-align:right">待ち / Waiting</th>
      <th style="text-align:right">目安 / Est.</th><th style="text-align:right">最長 / Longest</th></tr></thead>
    <tbody>${rows}
      <tr data-queue=""><td>この窓口宛て <span class="en">Sent to this counter</span></td><td class="n" id="direct-waiting">${direct}</td><td></td><td></td></tr>
    </tbody></table>
    <p class="strategy">呼出順 / Order: <b>${esc(STRATEGY[p.strategy] || p.strategy)}</b> · 転送・優先が先 <span class="en">transfers and priority first</span></p>`;
}

function renderButtons() {
  const st = counterState();
  const cur = C.current;
  const known = cur !== undefined;
  const status = cur?.status;
  const allow = {
    "call-next": !known || (st === "open" && !cur) || st === null,
    call: !known || (st === "open" && !cur) || st === null,
    recall: !known || status === "called",
    start: !known || status === "called",
    "no-show": !known || status === "called",
    complete: !known || status === "serving",
    transfer: !known || status === "serving",
    open: st !== "open",
    pause: st !== "paused",
    close: st !== "closed" && !(known && cur),
  };
  document.querySelectorAll("main [data-action]").forEach((b) => {
    b.disabled = C.busy || !allow[b.dataset.action];
  });
  document.querySelectorAll(".segment [data-action]").forEach((b) => {
    const map = { open: "open", pause: "paused", close: "closed" };
    b.setAttribute("aria-pressed", String(st === map[b.dataset.action]));
  });
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------
const INFO = {
  "call-next": (t) => `<b>${esc(t.number)}</b> を呼び出しました <span class="en">Called ${esc(t.number)}</span>`,
  call: (t) => `<b>${esc(t.number)}</b> を呼び出しました <span class="en">Called ${esc(t.number)}</span>`,
  recall: (t) => `<b>${esc(t.number)}</b> を再呼出しました（${t.calls}回目） <span class="en">Called ${esc(t.number)} again (call ${t.calls})</span>`,
  start: (t) => `<b>${esc(t.number)}</b> 対応を開始しました <span class="en">Service started</span>`,
  "no-show": (t) => t.status === "waiting"
    ? `<b>${esc(t.number)}</b> 不在：列の最後に戻しました <span class="en">No-show: back at the end of the line</span>`
    : `<b>${esc(t.number)}</b> 不在：受付を終了しました <span class="en">No-show: the visit has ended</span>`,
  complete: (t) => `<b>${esc(t.number)}</b> 完了しました <span class="en">Completed</span>`,
  open: () => `窓口を開始しました <span class="en">Counter open</span>`,
  pause: () => `窓口を休止しました <span class="en">Counter paused</span>`,
  close: () => `窓口を終了しました <span class="en">Counter closed</span>`,
};

async function act(action, body, infoOverride) {
  if (C.busy) return;
  C.busy = true;
  renderButtons();
  try {
    const r = await api("POST", `/api/v1/sites/${SITE_Q}/counters/${encodeURIComponent(C.counterId)}/${action}`,
      { token: token(), body });
    if (r === null) {
      say("info", `お待ちの方はいません <span class="en">Nobody waiting</span>`);
    } else {
      applyReply(r, action);
      const f = infoOverride || INFO[action];
      say("info", r.ticket && f ? f(r.ticket) : (f ? f({}) : "OK"));
    }
  } catch (e) {
    sayError(e);
  } finally {
    C.busy = false;
    renderAll();
  }
}

function applyReply(r, action) {
  if (r.counter) {
    C.counter = { state: r.counter.state, profile: r.counter.profile };
    const prev = C.current;
    C.current = r.counter.ticket || null;
    // The board's `since` is the service start while serving; until the board catches up, use now.
    if (action === "start") C.sinceOverride = new Date().toISOString();
    else if (action === "call-next" || action === "call" || action === "recall") C.sinceOverride = C.current?.since || null;
    else if (!C.current || prev?.number !== C.current?.number) C.sinceOverride = null;
  }
  if (r.ticket) C.shown = r.ticket;
}

function doAction(action) {
  if (action === "transfer") return openTransfer();
  if (action === "call") return openCall();
  return act(action);
}

// Transfer: a queue or another counter.
function openTransfer() {
  const procs = C.shown?.procedures || [];
  const bq = (id) => C.board?.queues?.find((q) => q.id === id);
  const bc = (id) => C.board?.counters?.find((c) => c.id === id);
  const queues = (C.catalog?.queues || []).map((q) => {
    const fits = procs.length && procs.some((p) => q.procedures?.includes(p));
    return `<button type="button" class="target${fits ? " fits" : ""}" data-transfer-queue="${esc(q.id)}">
      <b>${esc(q.name.ja)}</b><small>${esc(q.name.en)} · 待ち / waiting ${bq(q.id)?.waiting ?? "—"}</small></button>`;
  }).join("");
  const counters = (C.catalog?.counters || []).filter((c) => c.id !== C.counterId).map((c) => {
    const s = bc(c.id)?.state || c.state;
    const label = { open: "受付中 open", paused: "休止中 paused", closed: "終了 closed" }[s] || s;
    return `<button type="button" class="target" data-transfer-counter="${esc(c.id)}">
      <b>${esc(c.name.ja)}</b><small>${esc(c.name.en)} · ${esc(label)}</small></button>`;
  }).join("");
  $("transfer-body").innerHTML = `
    <p class="muted" style="margin-top:0">番号 <b>${esc(C.shown?.number ?? "")}</b> のこの窓口での対応を完了し、同じ番号のまま次の窓口へ回します。
      <span class="en">Completes this step; the resident keeps the same number and waits for the next step.</span></p>
    <div class="sub">列へ <span class="en">To a queue</span></div><div class="targets">${queues}</div>
    <div class="sub">窓口へ <span class="en">To a counter</span></div><div class="targets">${counters}</div>`;
  $("transfer-dialog").showModal();
}

function transfer(target) {
  $("transfer-dialog").close();
  const [kind, id] = target;
  const n = kind === "queue" ? nameOf(C.catalog?.queues, id) : nameOf(C.catalog?.counters, id);
  act("complete", { transfer_to: { [kind]: id } }, (t) =>
    `<b>${esc(t.number)}</b> を ${esc(n.ja)} へ転送しました <span class="en">Transferred to ${esc(n.en)}</span>`);
}

// Call a chosen ticket.
async function openCall() {
  $("call-number").value = "";
  $("call-body").innerHTML = `<div class="empty">読み込み中… <span class="en">loading…</span></div>`;
  $("call-dialog").showModal();
  await loadWaiting();
}

async function loadWaiting() {
  try {
    const r = await api("GET", `/api/v1/sites/${SITE_Q}/tickets?status=waiting`, { token: token() });
    const mine = new Set(profile().queues);
    const tz = C.catalog?.site?.timezone;
    const rows = (r?.tickets || []).map((t) => ({
      t, own: t.target?.counter === C.counterId || (t.target?.queue && mine.has(t.target.queue)),
    })).sort((a, b) => (b.own - a.own) || (b.t.priority - a.t.priority) || String(a.t.issued_at).localeCompare(String(b.t.issued_at)));
    if (!rows.length) {
      $("call-body").innerHTML = `<div class="empty">お待ちの方はいません <span class="en">Nobody waiting</span></div>`;
      return;
    }
    $("call-body").innerHTML = `<table class="tickets"><thead><tr><th>番号 / No.</th><th>列 / Queue</th><th>発券 / Issued</th><th>手続 / Plan</th><th></th></tr></thead><tbody>
      ${rows.map(({ t, own }) => {
        const where = t.target?.counter ? nameOf(C.catalog?.counters, t.target.counter) : nameOf(C.catalog?.queues, t.queue);
        return `<tr class="${own ? "mine" : ""}"><td style="font-size:20px;font-weight:800">${esc(t.number)} ${t.priority ? `<span class="prio">優先</span>` : ""}</td>
          <td>${esc(where.ja)}${t.position ? ` <span class="en">#${t.position}</span>` : ""}</td>
          <td class="num">${esc(clock(t.issued_at, tz))}</td>
          <td>${(t.procedures || []).length} <span class="en">件</span></td>
          <td style="text-align:right"><button type="button" class="callbtn" data-number="${esc(t.number)}">呼出 <span class="en">Call</span></button></td></tr>`;
      }).join("")}</tbody></table>`;
  } catch (e) {
    $("call-body").innerHTML = `<div class="empty" style="color:var(--alert)">${errorText(e)}</div>`;
  }
}

function callNumber(number) {
  number = String(number || "").trim();
  if (!number) return;
  $("call-dialog").close();
  act("call", { number });
}

// ---------------------------------------------------------------------------------------------
// Live data
// ---------------------------------------------------------------------------------------------
function onBoard(board, event) {
  C.board = board;
  const bc = boardCounter();
  if (bc) {
    if (C.counter) C.counter.state = bc.state;
    else C.counter = { state: bc.state, profile: catalogCounter()?.profile ?? { queues: [], strategy: "profile_order" } };
    const cur = bc.ticket || null;
    if (C.sinceOverride && (!cur || cur.status !== C.current?.status || cur.number !== C.current?.number)) C.sinceOverride = null;
    C.current = cur;
    syncCurrent();
  }
  if (event?.kind === "profile_changed" && event.counter === C.counterId) refreshCounter();
  renderAll();
}

async function refreshCounter() {
  try {
    const r = await api("GET", `/api/v1/sites/${SITE_Q}/counters/${encodeURIComponent(C.counterId)}`, { token: token() });
    if (r?.counter) {
      C.counter = { state: r.counter.state, profile: r.counter.profile };
      if (C.current === undefined) C.current = r.counter.ticket || null;
      syncCurrent();
      renderAll();
    }
  } catch (e) {
    if (e.status === 401 || e.status === 403) sayError(e);
    // Fall back to the public catalog for the profile.
    try { C.catalog = await loadCatalog(SITE); renderAll(); } catch { /* keep what we have */ }
  }
}

function startLive() {
  C.feed ??= shell.follow(SITE, onBoard);
}

function chooseCounter(id) {
  C.counterId = id;
  C.counter = null; C.current = undefined; C.shown = null; C.sinceOverride = null;
  const u = new URL(location.href);
  u.searchParams.set("counter", id);
  history.replaceState(null, "", u.pathname + u.search);
  $("counter-select").value = id;
  say("", "");
  renderShell();
  if (C.board) onBoard(C.board);
  if (token()) refreshCounter();
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------
// "Log out", "enter the token again", the token form and "reload" are the shell's.
document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b || b.disabled) return;
  if (b.dataset.chooseCounter) return chooseCounter(b.dataset.chooseCounter);
  if (b.hasAttribute("data-close")) return b.closest("dialog")?.close();
  if (b.dataset.transferQueue) return transfer(["queue", b.dataset.transferQueue]);
  if (b.dataset.transferCounter) return transfer(["counter", b.dataset.transferCounter]);
  if (b.dataset.number && b.closest("#call-dialog")) return callNumber(b.dataset.number);
  if (b.id === "call-refresh") return void loadWaiting();
  if (b.dataset.action && b.closest("main")) return void doAction(b.dataset.action);
});

document.addEventListener("submit", (ev) => {
  if (ev.target.id !== "call-form") return;
  ev.preventDefault();
  callNumber($("call-number").value);
});

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey || ev.repeat) return;
  if (ev.target.closest?.("input, select, textarea, [contenteditable]")) return;
  if (document.querySelector("dialog[open]")) return;
  const k = ev.key.toLowerCase();
  const b = document.querySelector(`main [data-key="${CSS.escape(k)}"]`);
  if (!b) return;
  ev.preventDefault();
  if (!b.disabled) b.click();
});

$("counter-select").addEventListener("change", (ev) => chooseCounter(ev.target.value));

setInterval(() => {
  $("clock").textContent = clock(Date.now(), C.catalog?.site?.timezone);
  renderElapsed();
  document.querySelectorAll("#queues [data-oldest]").forEach((td) => {
    const s = td.dataset.oldest;
    td.textContent = s ? elapsed(Date.now() - new Date(s).getTime()) : "—";
  });
}, 1000);

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------
async function boot() {
  try {
    C.catalog = await loadCatalog(SITE);
  } catch (e) {
    shell.failed($("main"), e);
    return;
  }
  $("site-name").innerHTML = bilingual(C.catalog.site.name);
  document.title = `${C.catalog.site.name.ja} 窓口端末 / Counter console`;
  $("counter-select").innerHTML = `<option value="" disabled ${C.counterId ? "" : "selected"}>—</option>` +
    C.catalog.counters.map((c) => `<option value="${esc(c.id)}" ${c.id === C.counterId ? "selected" : ""}>${esc(c.name.ja)} / ${esc(c.name.en)}</option>`).join("");
  $("clock").textContent = clock(Date.now(), C.catalog.site.timezone);
  renderShell();
  startLive();
  if (token() && C.counterId && catalogCounter()) refreshCounter();
}
boot();
