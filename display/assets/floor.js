// The floor board (/screens/floor/{site}): every counter and queue live, open/pause/close, which
// queues a counter serves, alerts. Needs a floor token on the device.
import { api, loadCatalog, esc, waitText, clock, nameOf, siteFromPath, say, errorText, bilingual, elapsed,
  ConsoleShell } from "/assets/common.js";

const SITE = siteFromPath();
const SITE_Q = encodeURIComponent(SITE);
const $ = (id) => document.getElementById(id);

const F = {
  catalog: null,
  board: null,
  feed: null,
  busy: new Set(),          // counters with a request under way
  editing: null,            // {counter, order: [queue ids], on: Set}
  audit: null,              // the latest floor changes, newest first (GET …/audit)
};

const STRATEGY = { profile_order: "定義順 / Profile order", longest_wait: "長く待っている順 / Longest wait" };
const PRINTER = {
  online: ["正常", "Online", "ok"],
  paper_near_end: ["用紙残りわずか", "Paper low", "soft"],
  paper_end: ["用紙切れ", "Paper out", "bad"],
  cover_open: ["カバーが開いています", "Cover open", "bad"],
  offline: ["オフライン", "Offline", "bad"],
  unreachable: ["プリンターに接続できません", "Printer unreachable", "bad"],
  disconnected: ["エージェント未接続", "Agent disconnected", "bad"],
  unknown: ["不明", "Unknown", "unknown"],
};
// States that need a member of staff at the printer (everything but these three).
const PRINTER_FINE = new Set(["online", "paper_near_end", "unknown"]);

// ---------------------------------------------------------------------------------------------
// The console shell: the token once per device (`#token=…` in the address stores it once).
// ---------------------------------------------------------------------------------------------
const shell = new ConsoleShell("floor", {
  lead: { ja: "フロア管理用のトークンを入力してください（一度だけ）。",
          en: "Enter the floor manager token for this device (asked once)." },
  onToken: () => renderShell(),
});
const token = () => shell.value;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------
const alertMin = () => Number(F.catalog?.screens?.floor?.wait_alert_min ?? 30) || 30;
const tz = () => F.catalog?.site?.timezone;

const minutesSince = (t) => (Date.now() - new Date(t).getTime()) / 60000;

const catCounter = (id) => F.catalog?.counters?.find((c) => c.id === id);
const boardCounter = (id) => F.board?.counters?.find((c) => c.id === id);
const counterState = (id) => boardCounter(id)?.state ?? catCounter(id)?.state ?? "closed";

// ---------------------------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------------------------
function renderShell() {
  if (shell.signIn($("main"))) return;
  $("main").innerHTML = `<div class="layout">
      <section aria-labelledby="counters-h">
        <h2 id="counters-h">窓口 <span class="en">Counters</span></h2>
        <div class="counters" id="counters"></div>
      </section>
      <div class="stack">
        <section class="card" aria-labelledby="queues-h">
          <h2 id="queues-h">待ち状況 <span class="en">Queues</span></h2>
          <div id="queues"></div>
        </section>
        <section class="card" aria-labelledby="printers-h">
          <h2 id="printers-h">プリンター <span class="en">Printers</span></h2>
          <div id="printers"></div>
        </section>
        <section class="card" aria-labelledby="audit-h">
          <h2 id="audit-h">最近の操作 <span class="en">Recent changes</span></h2>
          <div id="audit"></div>
        </section>
      </div>
    </div>`;
  renderAll();
}

function renderAll() {
  renderSummary();
  renderCounters();
  renderQueues();
  renderPrinters();
  renderAudit();
  renderAlerts();
}

const AUDIT = {
  counter_opened: ["開設", "opened"],
  counter_paused: ["休止", "paused"],
  counter_closed: ["閉鎖", "closed"],
  profile_changed: ["担当変更", "profile changed"],
  ticket_cancelled: ["受付取消", "ticket cancelled"],
  called_out_of_order: ["順番外の呼出", "called out of order"],
};

/** Who changed the floor lately: the token's name, the action, the counter or number. */
function renderAudit() {
  const el = $("audit");
  if (!el) return;
  if (!F.audit) { el.innerHTML = `<p class="muted" style="margin:0">…</p>`; return; }
  if (!F.audit.length) { el.innerHTML = `<p class="muted" style="margin:0">まだありません <span class="en">None yet</span></p>`; return; }
  el.innerHTML = `<table><tbody>${F.audit.map((a) => {
    const [ja, en] = AUDIT[a.action] || [a.action, a.action];
    const what = [a.counter ? `${esc(a.counter)}番窓口` : "", a.number ? `No.${esc(a.number)}` : ""].filter(Boolean).join(" ");
    return `<tr data-audit="${esc(a.action)}"><td class="n">${esc(clock(a.at, tz()))}</td>
      <td><b>${esc(a.operator)}</b><div class="served">${esc(a.role)}</div></td>
      <td>${esc(ja)} <span class="en">${esc(en)}</span>${what ? `<div class="served">${what}</div>` : ""}</td></tr>`;
  }).join("")}</tbody></table>`;
}

/** Reads the trail again (after a change the live feed announced); quietly keeps the old one on error. */
let auditReload = null;
function loadAudit() {
  clearTimeout(auditReload);
  auditReload = setTimeout(async () => {
    try {
      const r = await api("GET", `/api/v1/sites/${SITE_Q}/audit?limit=8`, { token: token() });
      F.audit = r.audit;
      renderAudit();
    } catch { /* the next change tries again */ }
  }, 100);
}
const AUDITED = new Set(["counter_state_changed", "profile_changed", "ticket_cancelled", "ticket_called"]);

function renderSummary() {
  const cs = F.catalog?.counters || [];
  const open = cs.filter((c) => counterState(c.id) === "open").length;
  const waiting = (F.board?.queues || []).reduce((a, q) => a + q.waiting, 0);
  $("summary").innerHTML = F.catalog
    ? `<span>開いている窓口 <span class="en">Open</span> <b>${open}</b>/${cs.length}</span><span>待ち <span class="en">Waiting</span> <b>${waiting}</b></span>`
    : "";
}

function renderCounters() {
  const el = $("counters");
  if (!el || !F.catalog) return;
  const queues = F.catalog.queues || [];
  el.innerHTML = F.catalog.counters.map((c) => {
    const bc = boardCounter(c.id);
    const state = bc?.state ?? c.state;
    const t = bc?.ticket;
    const p = c.profile || { queues: [], strategy: "profile_order" };
    const busy = F.busy.has(c.id);
    const chips = p.queues.map((q, i) => `<span class="chip" data-profile-queue="${esc(q)}"><i>${i + 1}</i>${esc(nameOf(queues, q).ja)}</span>`).join("");
    return `<article class="counter" data-counter="${esc(c.id)}" data-state="${esc(state)}">
      <div class="c-head">
        <div class="c-name">${bilingual(c.name)}</div>
        <span class="state" data-state="${esc(state)}">${esc(state)}</span>
      </div>
      <div class="c-ticket">
        ${t ? `<span class="c-num" data-number="${esc(t.number)}">${esc(t.number)}</span>
               <span class="t-status" data-status="${esc(t.status)}">${esc(t.status)}</span>
               <span class="elapsed" data-since="${esc(t.since || "")}" title="${t.status === "serving" ? "対応時間 / time in service" : "呼出からの時間 / since called"}"></span>`
            : `<span class="c-num none">—</span><span class="muted">対応中の番号なし <span class="en">no ticket</span></span>`}
      </div>
      ${bc?.waiting ? `<span class="direct">この窓口宛て待ち <b>${bc.waiting}</b> <span class="en">waiting for this counter</span></span>` : ""}
      <div class="profile">${chips || `<span class="muted">—</span>`}</div>
      <div class="strategy">呼出順 / Order: ${esc(STRATEGY[p.strategy] || p.strategy)}</div>
      <div class="c-actions">
        <button type="button" class="mini" data-action="open" ${busy || state === "open" ? "disabled" : ""}>開始<span class="en">Open</span></button>
        <button type="button" class="mini" data-action="pause" ${busy || state === "paused" ? "disabled" : ""}>休止<span class="en">Pause</span></button>
        <button type="button" class="mini" data-action="close" ${busy || state === "closed" ? "disabled" : ""}>終了<span class="en">Close</span></button>
        <button type="button" class="mini edit" data-action="edit-profile" ${busy ? "disabled" : ""}>担当変更<span class="en">Edit profile</span></button>
      </div>
    </article>`;
  }).join("");
  tickTimes();
}

function servedBy(queueId) {
  const cs = F.catalog?.counters || [];
  const serving = cs.filter((c) => c.profile?.queues?.includes(queueId));
  return { all: serving.length, open: serving.filter((c) => counterState(c.id) === "open").length };
}

function renderQueues() {
  const el = $("queues");
  if (!el || !F.catalog) return;
  const limit = alertMin();
  const rows = (F.catalog.queues || []).map((q) => {
    const b = F.board?.queues?.find((x) => x.id === q.id);
    const over = b?.oldest_since && minutesSince(b.oldest_since) >= limit;
    const s = servedBy(q.id);
    return `<tr data-queue="${esc(q.id)}" class="${over ? "over" : ""}">
      <td>${esc(q.name.ja)}<span class="en qen">${esc(q.name.en)}</span><div class="served">受付中の担当窓口 ${s.open}/${s.all} <span class="en">open counters</span></div></td>
      <td class="n big" data-waiting="${b?.waiting ?? ""}">${b ? b.waiting : "—"}</td>
      <td class="n longest" data-oldest="${esc(b?.oldest_since || "")}">—</td>
      <td class="n est">${b ? `${esc(waitText(b.estimated_wait_s, "ja"))}<span class="en">${esc(waitText(b.estimated_wait_s, "en"))}</span>` : "—"}</td>
    </tr>`;
  }).join("");
  el.innerHTML = `<table><thead><tr><th>列 / Queue</th><th class="n">待ち<span class="en">Waiting</span></th><th class="n">最長待ち<span class="en">Longest</span></th><th class="n">目安<span class="en">Estimate</span></th></tr></thead>
    <tbody>${rows}</tbody></table>
    <p class="served" style="margin:8px 0 0">警告: 最長待ち ${limit}分以上 <span class="en">Alert when the longest wait passes ${limit} min</span></p>`;
  tickTimes();
}

function renderPrinters() {
  const el = $("printers");
  if (!el) return;
  const list = F.board?.printers || [];
  if (!list.length) { el.innerHTML = `<p class="muted" style="margin:0">プリンターはありません <span class="en">No printers</span></p>`; return; }
  el.innerHTML = `<table><thead><tr><th>プリンター<span class="en">Printer</span></th><th>状態<span class="en">State</span></th><th class="n">から<span class="en">Since</span></th></tr></thead><tbody>
    ${list.map((p) => {
      const [ja, en, cls] = PRINTER[p.state] || [p.state, p.state, "bad"];
      const disp = (F.catalog?.dispensers || []).filter((d) => d.printer_agent === p.id).map((d) => d.id);
      return `<tr data-printer="${esc(p.id)}" data-state="${esc(p.state)}"><td><b>${esc(p.id)}</b>${disp.length ? `<div class="served">${esc(disp.join(", "))}</div>` : ""}</td>
        <td><span class="pstate ${cls}">${esc(ja)}</span><span class="en" style="display:block">${esc(en)}</span></td>
        <td class="n">${p.since ? esc(clock(p.since, tz())) : "—"}</td></tr>`;
    }).join("")}</tbody></table>`;
}

function renderAlerts() {
  if (!F.catalog) return;
  const limit = alertMin();
  const alerts = [], warnings = [];
  for (const b of F.board?.queues || []) {
    if (!b.oldest_since) continue;
    const m = Math.floor(minutesSince(b.oldest_since));
    if (m >= limit) {
      const n = nameOf(F.catalog.queues, b.id);
      alerts.push(`<div class="alert-item" data-alert="queue:${esc(b.id)}"><span>${esc(n.ja)}：最長待ち ${m}分（基準 ${limit}分） <span class="en">${esc(n.en)}: longest wait ${m} min (limit ${limit})</span></span></div>`);
    }
  }
  for (const b of F.board?.queues || []) {
    if (!b.waiting) continue;
    if (servedBy(b.id).open === 0) {
      const n = nameOf(F.catalog.queues, b.id);
      warnings.push(`<div class="alert-item" data-warning="unserved:${esc(b.id)}"><span>${esc(n.ja)}：${b.waiting}人待ち、担当する開いた窓口がありません <span class="en">${esc(n.en)}: ${b.waiting} waiting, no open counter serves it</span></span></div>`);
    }
  }
  for (const p of F.board?.printers || []) {
    const [ja, en] = PRINTER[p.state] || [p.state, p.state];
    if (!PRINTER_FINE.has(p.state)) {
      alerts.push(`<div class="alert-item" data-alert="printer:${esc(p.id)}"><span>プリンター ${esc(p.id)}：${esc(ja)} <span class="en">Printer ${esc(p.id)}: ${esc(en)}</span></span></div>`);
    } else if (p.state === "paper_near_end") {
      warnings.push(`<div class="alert-item" data-warning="printer:${esc(p.id)}"><span>プリンター ${esc(p.id)}：${esc(ja)}。用紙を補充してください <span class="en">Printer ${esc(p.id)}: paper low, please refill</span></span></div>`);
    }
  }
  const a = alerts.join(""), w = warnings.join("");
  if ($("alerts").innerHTML !== a) $("alerts").innerHTML = a;
  if ($("warnings").innerHTML !== w) $("warnings").innerHTML = w;
}

/** Ticking times: time in service per counter, longest wait per queue; and the alerts. */
function tickTimes() {
  document.querySelectorAll("#counters .elapsed[data-since]").forEach((el) => {
    const s = el.dataset.since;
    el.textContent = s ? elapsed(Date.now() - new Date(s).getTime()) : "";
    el.classList.toggle("long", !!s && minutesSince(s) >= alertMin());
  });
  const limit = alertMin();
  document.querySelectorAll("#queues [data-oldest]").forEach((el) => {
    const s = el.dataset.oldest;
    el.textContent = s ? elapsed(Date.now() - new Date(s).getTime()) : "—";
    el.closest("tr")?.classList.toggle("over", !!s && minutesSince(s) >= limit);
  });
}

// ---------------------------------------------------------------------------------------------
// Actions
// ---------------------------------------------------------------------------------------------
async function counterAction(id, action) {
  if (F.busy.has(id)) return;
  F.busy.add(id);
  renderCounters();
  const n = catCounter(id)?.name || { ja: id, en: id };
  try {
    const r = await api("POST", `/api/v1/sites/${SITE_Q}/counters/${encodeURIComponent(id)}/${action}`, { token: token() });
    if (r?.counter) applyCounter(r.counter);
    const what = { open: ["を開始しました", "opened"], pause: ["を休止しました", "paused"], close: ["を終了しました", "closed"] }[action];
    say("info", `${esc(n.ja)}${what[0]} <span class="en">${esc(n.en)} ${what[1]}</span>`);
  } catch (e) {
    say("error", `${esc(n.ja)}: ${errorText(e)}`);
  } finally {
    F.busy.delete(id);
    renderAll();
  }
}

function applyCounter(v) {
  const c = catCounter(v.id);
  if (c) { c.state = v.state; c.profile = v.profile; }
  const bc = boardCounter(v.id);
  if (bc) bc.state = v.state;
}

// Profile editor.
function openEditor(id) {
  const c = catCounter(id);
  if (!c) return;
  const p = c.profile || { queues: [], strategy: "profile_order" };
  const rest = (F.catalog.queues || []).map((q) => q.id).filter((q) => !p.queues.includes(q));
  F.editing = { counter: id, order: [...p.queues, ...rest], on: new Set(p.queues) };
  $("profile-title").innerHTML = `${esc(c.name.ja)} の担当 <span class="en">${esc(c.name.en)} — profile</span>`;
  $("strategy").value = p.strategy || "profile_order";
  $("profile-error").textContent = "";
  renderEditor();
  $("profile-dialog").showModal();
}

function renderEditor() {
  const e = F.editing;
  if (!e) return;
  // Ticked queues first, in their order; the others after them.
  e.order = [...e.order.filter((q) => e.on.has(q)), ...e.order.filter((q) => !e.on.has(q))];
  const onCount = e.order.filter((q) => e.on.has(q)).length;
  $("profile-queues").innerHTML = e.order.map((q, i) => {
    const on = e.on.has(q);
    const n = nameOf(F.catalog.queues, q);
    return `<li class="qrow${on ? "" : " off"}" data-row="${esc(q)}">
      <label><input type="checkbox" data-queue="${esc(q)}" ${on ? "checked" : ""}>
        <span class="pos">${on ? i + 1 : ""}</span><span>${bilingual(n)}</span></label>
      <button type="button" class="move" data-move="up" data-queue-move="${esc(q)}" aria-label="上へ / Up" ${!on || i === 0 ? "disabled" : ""}>▲</button>
      <button type="button" class="move" data-move="down" data-queue-move="${esc(q)}" aria-label="下へ / Down" ${!on || i >= onCount - 1 ? "disabled" : ""}>▼</button>
    </li>`;
  }).join("");
}

function move(q, dir) {
  const e = F.editing;
  const i = e.order.indexOf(q);
  const j = dir === "up" ? i - 1 : i + 1;
  if (i < 0 || j < 0 || j >= e.order.length || !e.on.has(e.order[j])) return;
  [e.order[i], e.order[j]] = [e.order[j], e.order[i]];
  renderEditor();
  document.querySelector(`[data-queue-move="${CSS.escape(q)}"][data-move="${dir}"]:not(:disabled)`)?.focus();
}

async function saveProfile() {
  const e = F.editing;
  if (!e) return;
  const queues = e.order.filter((q) => e.on.has(q));
  if (!queues.length) {
    $("profile-error").textContent = "列を1つ以上選んでください / Choose at least one queue";
    return;
  }
  const body = { queues, strategy: $("strategy").value };
  $("save-profile").disabled = true;
  try {
    const r = await api("PUT", `/api/v1/sites/${SITE_Q}/counters/${encodeURIComponent(e.counter)}/profile`, { token: token(), body });
    if (r?.counter) applyCounter(r.counter);
    const n = catCounter(e.counter)?.name || { ja: e.counter, en: e.counter };
    F.editing = null;
    $("profile-dialog").close();
    say("info", `${esc(n.ja)} の担当を変更しました <span class="en">${esc(n.en)}: profile saved</span>`);
    renderAll();
  } catch (err) {
    $("profile-error").innerHTML = errorText(err);
    say("error", errorText(err));
  } finally {
    $("save-profile").disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Live data
// ---------------------------------------------------------------------------------------------
let catalogReload = null;
function onBoard(board, event) {
  F.board = board;
  for (const bc of board.counters || []) { const c = catCounter(bc.id); if (c) c.state = bc.state; }
  if (!event || AUDITED.has(event.kind)) loadAudit();
  if (event?.kind === "profile_changed") {
    // The board carries no profiles: the catalog has the live ones.
    clearTimeout(catalogReload);
    catalogReload = setTimeout(async () => {
      try { const c = await loadCatalog(SITE); F.catalog.counters = c.counters; renderAll(); } catch { /* next event */ }
    }, 150);
  }
  renderAll();
}

function startLive() {
  F.feed ??= shell.follow(SITE, onBoard);
}

// ---------------------------------------------------------------------------------------------
// Input
// ---------------------------------------------------------------------------------------------
// "Log out", "enter the token again", the token form and "reload" are the shell's.
document.addEventListener("click", (ev) => {
  const b = ev.target.closest("button");
  if (!b || b.disabled) return;
  if (b.id === "cancel-profile") { F.editing = null; $("profile-dialog").close(); return; }
  if (b.dataset.move) { move(b.dataset.queueMove, b.dataset.move); return; }
  const card = b.closest("[data-counter]");
  if (card && b.dataset.action) {
    const id = card.dataset.counter;
    if (b.dataset.action === "edit-profile") openEditor(id);
    else counterAction(id, b.dataset.action);
  }
});

document.addEventListener("change", (ev) => {
  const cb = ev.target.closest?.("#profile-queues input[type=checkbox][data-queue]");
  if (!cb || !F.editing) return;
  if (cb.checked) F.editing.on.add(cb.dataset.queue); else F.editing.on.delete(cb.dataset.queue);
  renderEditor();
  document.querySelector(`#profile-queues input[data-queue="${CSS.escape(cb.dataset.queue)}"]`)?.focus();
});

document.addEventListener("submit", (ev) => {
  if (ev.target.id === "profile-editor") { ev.preventDefault(); saveProfile(); }
});
$("profile-dialog").addEventListener("close", () => { F.editing = null; });

setInterval(() => {
  if (F.catalog) $("clock").textContent = clock(Date.now(), tz());
  tickTimes();
  renderAlerts();
}, 1000);

// ---------------------------------------------------------------------------------------------
// Start
// ---------------------------------------------------------------------------------------------
async function boot() {
  try {
    F.catalog = await loadCatalog(SITE);
  } catch (e) {
    shell.failed($("main"), e);
    return;
  }
  $("site-name").innerHTML = bilingual(F.catalog.site.name);
  $("clock").textContent = clock(Date.now(), tz());
  document.title = `${F.catalog.site.name.ja} フロア管理 / Floor`;
  renderShell();
  startLive();
}
boot();
