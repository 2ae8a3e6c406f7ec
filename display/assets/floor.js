// The floor board (/screens/floor/{site}): every counter and queue live, open/pause/close, which
// queues a counter serves, each queue's reception (close it for the rest of the period, or keep it
// open against the forecast), alerts, a what-if panel (forecast counter changes before making
// them), the server's suggestions, the booking slots' capacity (予約枠) and the site's webhook
// subscribers with their dead letters (外部連携). Needs a floor token on the device.
import { api, loadCatalog, esc, waitText, clock, nameOf, siteFromPath, say, errorText, bilingual, elapsed,
  ConsoleShell } from "/assets/common.js";
import { receptionNotice, nextOpenLine, stateLabel, stateOf, wallClock, timeText, todayAt } from "/assets/reception.js";

const SITE = siteFromPath();
const SITE_Q = encodeURIComponent(SITE);
const $ = (id) => document.getElementById(id);

const F = {
  catalog: null,
  board: null,
  feed: null,
  busy: new Set(),          // counters with a request under way
  receptionBusy: new Set(), // queues whose reception is being changed
  editing: null,            // {counter, order: [queue ids], on: Set}
  audit: null,              // the latest floor changes, newest first (GET …/audit)
  // The what-if panel: counter changes to try ({counter, state: "" (no change) | "open" | "paused" |
  // "closed", order: [queue ids], on: Set, strategy}), extra arrivals per hour by queue, the horizon,
  // the latest forecast and whether the inputs changed since.
  wi: { changes: [], extra: {}, horizon: "180", result: null, stale: false, busy: "", error: "", note: "", run: 0 },
  suggestions: [],          // GET …/suggestions, as last answered
  sugState: new Map(),      // per suggestion key: {busy, applied, error}
  // The booking slots panel: the day shown ("" until the first day with slots is found), its slots
  // as last read (null while reading), capacities typed but not set yet (by slot key), the slot
  // being set, the latest change's note or error (and its slot), an error reading the day.
  slots: { off: false, found: false, date: "", list: null, drafts: new Map(), busy: "", note: "", error: "",
    errorKey: "", loadError: "", run: 0 },
  // The integrations panel (外部連携): the site's webhook subscribers and dead letters as last
  // read (null until read), the site's last seq, dead letters being sent again and the error of
  // a failed retry (by dead letter key), the latest note, an error reading the list. `off` while
  // the site has no subscribers (or this token may not see them): the panel is hidden.
  hooks: { off: true, list: null, dead: [], seq: 0, busy: new Set(), errors: new Map(), note: "", loadError: "", run: 0 },
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
  if (shell.signIn($("main"))) {
    renderSuggestions();
    return;
  }
  $("main").innerHTML = `<div class="layout">
      <div class="stack">
        <section aria-labelledby="counters-h">
          <h2 id="counters-h">窓口 <span class="en">Counters</span></h2>
          <div class="counters" id="counters"></div>
        </section>
        ${whatIfPanel()}
      </div>
      <div class="stack">
        <section class="card" aria-labelledby="queues-h">
          <h2 id="queues-h">待ち状況 <span class="en">Queues</span></h2>
          <div id="queues"></div>
        </section>
        <section class="card" aria-labelledby="printers-h">
          <h2 id="printers-h">プリンター <span class="en">Printers</span></h2>
          <div id="printers"></div>
        </section>
        ${integrationsPanel()}
        <section class="card" aria-labelledby="audit-h">
          <h2 id="audit-h">最近の操作 <span class="en">Recent changes</span></h2>
          <div id="audit"></div>
        </section>
        ${slotsPanel()}
      </div>
    </div>`;
  renderWhatIf();
  renderSlots();
  renderIntegrations();
  renderAll();
  // Suggestions: once now (at load, or for the token just entered), then every 15 s.
  if (F.catalog) scheduleSuggestions(0);
  // The integrations: now, then every 10 s.
  if (F.catalog) loadIntegrations();
}

function renderAll() {
  renderSummary();
  renderCounters();
  renderQueues();
  renderPrinters();
  renderAudit();
  renderAlerts();
  refreshWhatIfLive();
}

const AUDIT = {
  counter_opened: ["開設", "opened"],
  counter_paused: ["休止", "paused"],
  counter_closed: ["閉鎖", "closed"],
  profile_changed: ["担当変更", "profile changed"],
  ticket_cancelled: ["受付取消", "ticket cancelled"],
  called_out_of_order: ["順番外の呼出", "called out of order"],
  reception_closed: ["受付終了", "reception closed"],
  reception_kept_open: ["受付継続", "reception kept open"],
  slot_capacity_set: ["予約枠の定員変更", "slot capacity set"],
};

/** Who changed the floor lately: the token's name, the action, the counter or number. */
function renderAudit() {
  const el = $("audit");
  if (!el) return;
  if (!F.audit) { el.innerHTML = `<p class="muted" style="margin:0">…</p>`; return; }
  if (!F.audit.length) { el.innerHTML = `<p class="muted" style="margin:0">まだありません <span class="en">None yet</span></p>`; return; }
  el.innerHTML = `<table><tbody>${F.audit.map((a) => {
    const [ja, en] = AUDIT[a.action] || [a.action, a.action];
    const queues = a.action.startsWith("reception_") || a.action === "slot_capacity_set" ? (a.queues || []).map((q) => esc(nameOf(F.catalog?.queues, q).ja)) : [];
    const what = [a.counter ? `${esc(a.counter)}番窓口` : "", a.number ? `No.${esc(a.number)}` : "", ...queues].filter(Boolean).join(" ");
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
const AUDITED = new Set(["counter_state_changed", "profile_changed", "ticket_cancelled", "ticket_called", "reception_changed",
  "slot_capacity_set"]);

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
    return `<tr data-queue="${esc(q.id)}" data-reception="${esc(stateOf(b))}" class="${over ? "over" : ""}">
      <td>${esc(q.name.ja)}<span class="en qen">${esc(q.name.en)}</span><div class="served">受付中の担当窓口 ${s.open}/${s.all} <span class="en">open counters</span></div>
        ${receptionCell(q.id, b)}</td>
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

/** A queue's reception: its state, when it ends or opens again, and the floor's two buttons. */
function receptionCell(id, b) {
  const state = stateOf(b);
  const label = stateLabel(state, b?.next_open, tz());
  const notice = receptionNotice(state, b?.next_open, tz());
  const line = nextOpenLine(state, b?.next_open, tz());
  const until = state === "open" && wallClock(b?.last_reception);
  const busy = F.receptionBusy.has(id) || !b;
  const detail = notice
    ? `${esc(notice.ja)}${line ? ` ${esc(line.ja)}` : ""} <span class="en">${esc(notice.en)}${line ? `. ${esc(line.en)}` : ""}</span>`
    : until ? `受付 ${esc(timeText(until, "ja"))} まで <span class="en">tickets until ${esc(timeText(until, "en"))}</span>` : "";
  return `<div class="reception" data-state="${esc(state)}">
      <span class="rstate" data-state="${esc(state)}">${esc(label.ja)} <span class="en">${esc(label.en)}</span></span>
      ${detail ? `<span class="rnote">${detail}</span>` : ""}
      <span class="r-actions">
        <button type="button" class="mini" data-reception-mode="closing" ${busy || state !== "open" ? "disabled" : ""}
          title="この列の受付を期間の終わりまで終了します / Take no more tickets for the rest of the period">受付終了<span class="en">Close reception</span></button>
        <button type="button" class="mini" data-reception-mode="open" ${busy || state === "closed" ? "disabled" : ""}
          title="予測で満杯でも受付を続けます / Keep taking tickets even when the forecast says the day is full">受付再開<span class="en">Keep open</span></button>
      </span>
    </div>`;
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

/** Closes a queue's reception for the rest of the period ("closing") or keeps it open ("open"). */
async function receptionAction(id, mode) {
  if (F.receptionBusy.has(id)) return;
  F.receptionBusy.add(id);
  renderQueues();
  const n = nameOf(F.catalog?.queues, id);
  try {
    const r = await api("PUT", `/api/v1/sites/${SITE_Q}/queues/${encodeURIComponent(id)}/reception`,
      { token: token(), body: { mode } });
    const bq = F.board?.queues?.find((q) => q.id === id);
    if (bq && r?.reception) Object.assign(bq, r.reception);
    const what = mode === "closing"
      ? ["の受付を終了しました", "is taking no more tickets"]
      : ["の受付を続けます", "keeps taking tickets"];
    say("info", `${esc(n.ja)}${what[0]} <span class="en">${esc(n.en)} ${what[1]}</span>`);
  } catch (e) {
    say("error", `${esc(n.ja)}（受付 / reception）: ${errorText(e)}`);
  } finally {
    F.receptionBusy.delete(id);
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
// What-if (見込み): try counter changes and more arrivals on a forecast (POST …/what-if changes
// nothing), compare each queue's wait over time, then apply the counter changes for real.
// ---------------------------------------------------------------------------------------------
const WI_STATES = [["", "変更なし", "No change"], ["open", "開始", "Open"], ["paused", "休止", "Pause"], ["closed", "終了", "Close"]];
const STATE_NAME = { open: ["受付中", "open"], paused: ["休止中", "paused"], closed: ["終了", "closed"] };
const ACTION_OF = { open: "open", paused: "pause", closed: "close" };

const profileOf = (id) => catCounter(id)?.profile || { queues: [], strategy: "profile_order" };
const counterName = (id) => catCounter(id)?.name || { ja: `${id}番窓口`, en: `Counter ${id}` };
const queueName = (q) => nameOf(F.catalog?.queues, q);
const minutes = (s) => Math.round((Number(s) || 0) / 60);

/** A change row for counter `id`: no state change, its current profile (ticked queues first). */
function newChange(id, { state = "", profile = profileOf(id) } = {}) {
  const rest = (F.catalog?.queues || []).map((q) => q.id).filter((q) => !profile.queues.includes(q));
  return { counter: id, state, order: [...profile.queues, ...rest], on: new Set(profile.queues),
    strategy: profile.strategy || "profile_order" };
}
const changeQueues = (ch) => ch.order.filter((q) => ch.on.has(q));
function profileChanged(ch) {
  const p = profileOf(ch.counter), qs = changeQueues(ch);
  return ch.strategy !== (p.strategy || "profile_order") || qs.length !== p.queues.length || qs.some((q, i) => q !== p.queues[i]);
}

/**
 * The what-if request from the panel: {body} or {error} (HTML). Counter rows that change nothing
 * are left out; a row must keep at least one queue.
 */
function wiRequest() {
  const counters = [];
  for (const ch of F.wi.changes) {
    const c = { id: ch.counter };
    if (ch.state) c.state = ch.state;
    if (profileChanged(ch)) {
      const queues = changeQueues(ch);
      if (!queues.length) {
        const n = counterName(ch.counter);
        return { error: `${esc(n.ja)}：列を1つ以上選んでください <span class="en">${esc(n.en)}: choose at least one queue</span>` };
      }
      c.profile = { queues, strategy: ch.strategy };
    }
    if (c.state || c.profile) counters.push(c);
  }
  const body = { counters };
  const extra = {};
  for (const [q, v] of Object.entries(F.wi.extra)) {
    const n = Number(v);
    if (String(v).trim() !== "" && Number.isFinite(n) && n !== 0) extra[q] = n;
  }
  if (Object.keys(extra).length) body.extra_arrivals_per_hour = extra;
  const h = String(F.wi.horizon).trim();
  if (h !== "") body.horizon_min = Number.isFinite(Number(h)) ? Number(h) : h;
  return { body };
}

/** The panel's frame (inputs are filled by renderWhatIf from F.wi). */
function whatIfPanel() {
  const extra = (F.catalog?.queues || []).map((q) => `<tr>
      <td><label for="wi-extra-${esc(q.id)}">${esc(q.name.ja)}<span class="en qen">${esc(q.name.en)}</span></label></td>
      <td class="n"><input type="number" id="wi-extra-${esc(q.id)}" data-wi-extra="${esc(q.id)}" min="0" max="1000" step="1" inputmode="numeric" placeholder="0"></td>
      <td class="served">人/時 <span class="en">per hour</span></td></tr>`).join("");
  return `<section class="card wi" id="whatif" aria-labelledby="whatif-h">
    <h2 id="whatif-h">見込み <span class="en">What-if</span></h2>
    <p class="served wi-lead">窓口の変更や来庁者の増加を試し、列ごとの待ち時間の見込みを今のままと比べます。「適用」を押すまで実際の窓口は変わりません。
      <span class="en">Try counter changes or more arrivals and compare each queue's forecast wait with things as they stand. Nothing changes until you press Apply.</span></p>
    <div class="wi-grid">
      <div class="wi-inputs">
        <h3>窓口の変更 <span class="en">Counter changes</span></h3>
        <ul class="wi-changes" id="wi-changes"></ul>
        <div class="wi-add">
          <label for="wi-add">窓口 <span class="en">Counter</span></label>
          <select id="wi-add"></select>
          <button type="button" class="btn secondary" id="wi-add-btn">追加 <span class="en">Add</span></button>
        </div>
        <h3>来庁者の増加 <span class="en">Extra arrivals</span></h3>
        <table class="wi-extra"><tbody>${extra}</tbody></table>
        <div class="wi-horizon">
          <label for="wi-horizon">見込む時間 <span class="en">Horizon</span></label>
          <input type="number" id="wi-horizon" min="10" max="480" step="10" inputmode="numeric">
          <span>分 <span class="en">min</span></span>
        </div>
        <div class="wi-buttons">
          <button type="button" class="btn" id="wi-run">見込みを計算 <span class="en">Run what-if</span></button>
          <button type="button" class="btn secondary" id="wi-apply">適用 <span class="en">Apply</span></button>
        </div>
        <div class="wi-error" id="wi-error" role="alert"></div>
        <div class="wi-note" id="wi-note" role="status"></div>
      </div>
      <div class="wi-results" id="wi-results" aria-live="polite"></div>
    </div>
  </section>`;
}

/** Fills the panel from F.wi (after renderShell). */
function renderWhatIf() {
  if (!$("whatif")) return;
  for (const el of document.querySelectorAll("#whatif [data-wi-extra]")) el.value = F.wi.extra[el.dataset.wiExtra] ?? "";
  $("wi-horizon").value = F.wi.horizon;
  renderWiChanges();
  renderWiStatus();
  renderWiResults();
}

function renderWiChanges() {
  const el = $("wi-changes");
  if (!el) return;
  el.innerHTML = F.wi.changes.length
    ? F.wi.changes.map(changeHtml).join("")
    : `<li class="wi-empty muted">変更はまだありません。下で窓口を選んで追加します。<span class="en">No changes yet: pick a counter below and add it.</span></li>`;
  const add = $("wi-add");
  const taken = new Set(F.wi.changes.map((c) => c.counter));
  const free = (F.catalog?.counters || []).filter((c) => !taken.has(c.id));
  const keep = add.value;
  add.innerHTML = free.map((c) => `<option value="${esc(c.id)}">${esc(optionText(c.id))}</option>`).join("");
  if (free.some((c) => c.id === keep)) add.value = keep;
  add.disabled = !free.length;
  renderWiStatus();
}

function optionText(id) {
  const n = counterName(id), [ja, en] = STATE_NAME[counterState(id)] || [counterState(id), counterState(id)];
  return `${n.ja}（${ja}） / ${n.en} (${en})`;
}

function changeHtml(ch) {
  const n = counterName(ch.counter), cur = counterState(ch.counter);
  const onCount = ch.order.filter((q) => ch.on.has(q)).length;
  const queues = ch.order.map((q, i) => {
    const on = ch.on.has(q);
    return `<li class="qrow${on ? "" : " off"}">
      <label><input type="checkbox" data-wi-queue="${esc(q)}" ${on ? "checked" : ""}>
        <span class="pos">${on ? i + 1 : ""}</span><span>${bilingual(queueName(q))}</span></label>
      <button type="button" class="move" data-wi-move="up" data-wi-q="${esc(q)}" aria-label="上へ / Up" ${!on || i === 0 ? "disabled" : ""}>▲</button>
      <button type="button" class="move" data-wi-move="down" data-wi-q="${esc(q)}" aria-label="下へ / Down" ${!on || i >= onCount - 1 ? "disabled" : ""}>▼</button>
    </li>`;
  }).join("");
  const strategies = Object.entries(STRATEGY).map(([v, label]) => `<option value="${v}" ${ch.strategy === v ? "selected" : ""}>${esc(label)}</option>`).join("");
  return `<li class="wi-change" data-wi-counter="${esc(ch.counter)}">
    <div class="wi-change-head">
      <span class="c-name">${bilingual(n)}</span>
      <span class="wi-current">現在 <span class="en">now</span> <span class="state" data-state="${esc(cur)}">${esc(cur)}</span></span>
      <button type="button" class="move wi-remove" data-wi-remove aria-label="この変更を外す / Remove this change">✕</button>
    </div>
    <div class="wi-states" role="group" aria-label="状態 / State">
      ${WI_STATES.map(([v, ja, en]) => `<button type="button" class="mini" data-wi-state="${v}" aria-pressed="${ch.state === v}">${ja}<span class="en">${en}</span></button>`).join("")}
    </div>
    <ul class="qrows wi-queues" aria-label="担当する列 / Queues served">${queues}</ul>
    <div class="strategy-field">
      <label for="wi-strategy-${esc(ch.counter)}">呼出順 <span class="en">Calling order</span></label>
      <select id="wi-strategy-${esc(ch.counter)}" data-wi-strategy>${strategies}</select>
    </div>
  </li>`;
}

/** Buttons, the error and the note; the results dimmed when the inputs changed since. */
function renderWiStatus() {
  if (!$("whatif")) return;
  const req = wiRequest();
  $("wi-run").disabled = !!F.wi.busy;
  $("wi-apply").disabled = !!F.wi.busy || !req.body || !req.body.counters.length;
  $("wi-add-btn").disabled = !!F.wi.busy || $("wi-add").disabled;
  $("whatif").dataset.busy = F.wi.busy;
  const err = F.wi.error || req.error || "";
  if ($("wi-error").innerHTML !== err) $("wi-error").innerHTML = err;
  $("wi-note").innerHTML = F.wi.busy === "run" ? `計算中… <span class="en">Forecasting…</span>`
    : F.wi.busy === "apply" ? `適用中… <span class="en">Applying…</span>` : F.wi.note;
  $("wi-results").classList.toggle("stale", F.wi.stale);
}

/** Board changes shown in the panel: each row's current state, the counter list. */
function refreshWhatIfLive() {
  for (const row of document.querySelectorAll("#wi-changes [data-wi-counter]")) {
    const st = row.querySelector(".wi-current .state"), cur = counterState(row.dataset.wiCounter);
    if (st && st.dataset.state !== cur) { st.dataset.state = cur; st.textContent = cur; }
  }
  for (const o of document.querySelectorAll("#wi-add option")) {
    const t = optionText(o.value);
    if (o.textContent !== t) o.textContent = t;
  }
}

function renderWiResults() {
  const el = $("wi-results");
  if (!el) return;
  const r = F.wi.result;
  if (!r) {
    el.innerHTML = `<p class="muted wi-empty">「見込みを計算」を押すと、列ごとの待ち時間の見込み（今のまま／変更後）が出ます。
      <span class="en">Run the what-if to see each queue's forecast wait, as things stand and with the changes.</span></p>`;
    return;
  }
  const alertS = alertMin() * 60;
  const order = (F.catalog?.queues || []).map((q) => q.id);
  const rows = [...(r.summary || [])].sort((a, b) => order.indexOf(a.queue) - order.indexOf(b.queue));
  const pointsOf = (f, q) => (f?.queues || []).find((x) => x.id === q)?.points || [];
  const last = r.baseline?.queues?.[0]?.points?.at(-1)?.at;
  const figs = rows.map((row) => {
    const n = queueName(row.queue);
    const b = minutes(row.longest_wait_s_baseline), w = minutes(row.longest_wait_s_with);
    const trend = w < b ? "better" : w > b ? "worse" : "same";
    const delta = trend === "same" ? `<span class="wi-delta">変化なし <span class="en">no change</span></span>`
      : `<span class="wi-delta">${w < b ? "−" : "+"}${Math.abs(w - b)}分</span>`;
    return `<figure class="wi-queue" data-wi-queue="${esc(row.queue)}" data-trend="${trend}"
        data-baseline-s="${Number(row.longest_wait_s_baseline) || 0}" data-with-s="${Number(row.longest_wait_s_with) || 0}">
      <figcaption>${bilingual(n)}</figcaption>
      <p class="wi-sum">最長待ち <b class="wi-base num">${b}</b>分 → <b class="wi-with num">${w}</b>分 ${delta}
        <span class="en">Longest wait ${b} min → ${w} min</span></p>
      ${chart(pointsOf(r.baseline, row.queue), pointsOf(r.with_changes, row.queue), alertS,
        `${n.ja}: 最長待ち ${b}分 → ${w}分 / ${n.en}: longest wait ${b} → ${w} min`)}
    </figure>`;
  }).join("");
  el.innerHTML = `<div class="wi-head">
      <span class="wi-asof" data-seq="${esc(r.seq)}">${esc(clock(r.at, tz()))}${last ? `–${esc(clock(last, tz()))}` : ""} の見込み <span class="en">forecast from ${esc(clock(r.at, tz()))}</span></span>
      <span class="wi-legend">
        <span class="wi-key base">今のまま <span class="en">As is</span></span>
        <span class="wi-key with">変更後 <span class="en">With changes</span></span>
        <span class="wi-key alert">基準 ${alertMin()}分 <span class="en">limit</span></span>
      </span>
    </div>
    <p class="wi-stale-note">条件が変わりました。もう一度計算してください。<span class="en">The inputs changed: run again.</span></p>
    <div class="wi-figs">${figs}</div>`;
}

/** Wait over time (minutes) for both forecasts, as inline SVG. */
function chart(base, withc, alertS, label) {
  const W = 320, H = 140, L = 34, R = 10, T = 10, B = 22;
  const all = [...base, ...withc];
  if (!all.length) return `<p class="muted">—</p>`;
  const times = all.map((p) => new Date(p.at).getTime());
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const maxMin = Math.max(10, ...all.map((p) => (Number(p.wait_s) || 0) / 60));
  const step = [5, 10, 15, 20, 30, 60, 90, 120, 180, 240].find((s) => maxMin / s <= 4) || 480;
  const top = Math.ceil(maxMin / step) * step;
  const x = (t) => L + (t1 > t0 ? (t - t0) / (t1 - t0) : 0) * (W - L - R);
  const y = (s) => T + (1 - s / 60 / top) * (H - T - B);
  const line = (ps) => ps.map((p) => `${x(new Date(p.at).getTime()).toFixed(1)},${y(Number(p.wait_s) || 0).toFixed(1)}`).join(" ");
  let grid = "";
  for (let m = 0; m <= top; m += step) {
    grid += `<line class="wi-gridline" x1="${L}" x2="${W - R}" y1="${y(m * 60).toFixed(1)}" y2="${y(m * 60).toFixed(1)}"/>
      <text class="wi-axis" x="${L - 4}" y="${(y(m * 60) + 3.5).toFixed(1)}" text-anchor="end">${m}</text>`;
  }
  const ticks = [t0, (t0 + t1) / 2, t1].map((t, i) =>
    `<text class="wi-axis" x="${x(t).toFixed(1)}" y="${H - 6}" text-anchor="${["start", "middle", "end"][i]}">${esc(clock(t, tz()))}</text>`).join("");
  const alert = alertS / 60 <= top
    ? `<line class="wi-alertline" x1="${L}" x2="${W - R}" y1="${y(alertS).toFixed(1)}" y2="${y(alertS).toFixed(1)}"/>` : "";
  return `<svg class="wi-chart" viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(label)}" xmlns="http://www.w3.org/2000/svg">
    ${grid}<text class="wi-axis" x="2" y="${T + 3}">分</text>${alert}${ticks}
    <polyline class="wi-line with" points="${line(withc)}"/>
    <polyline class="wi-line base" points="${line(base)}"/>
  </svg>`;
}

/** An input of the panel changed: a forecast shown is now for other inputs. */
function wiEdited() {
  F.wi.note = "";
  if (F.wi.result && !F.wi.stale) F.wi.stale = true;
  renderWiStatus();
}

async function runWhatIf() {
  const req = wiRequest();
  if (req.error) { F.wi.error = ""; renderWiStatus(); return; }
  const run = ++F.wi.run;
  Object.assign(F.wi, { busy: "run", error: "", note: "" });
  renderWiStatus();
  try {
    const r = await api("POST", `/api/v1/sites/${SITE_Q}/what-if`, { token: token(), body: req.body });
    if (run !== F.wi.run) return;
    Object.assign(F.wi, { result: r, stale: false });
  } catch (e) {
    if (run !== F.wi.run) return;
    Object.assign(F.wi, { result: null, stale: false, error: errorText(e) });
  } finally {
    if (run === F.wi.run) {
      F.wi.busy = "";
      renderWiResults();
      renderWiStatus();
    }
  }
}

/** Makes one counter's change for real: its profile (PUT), then its state (POST open|pause|close). */
async function changeCounter(id, { state, profile, always = false }, onStep = () => {}) {
  const base = `/api/v1/sites/${SITE_Q}/counters/${encodeURIComponent(id)}`;
  if (profile) {
    const r = await api("PUT", `${base}/profile`, { token: token(), body: profile });
    if (r?.counter) applyCounter(r.counter);
    onStep();
  }
  if (state && ACTION_OF[state] && (always || state !== counterState(id))) {
    const r = await api("POST", `${base}/${ACTION_OF[state]}`, { token: token() });
    if (r?.counter) applyCounter(r.counter);
    onStep();
  }
}

async function applyWhatIf() {
  const req = wiRequest();
  if (!req.body || !req.body.counters.length) return;
  F.wi.run++; // a forecast still under way is for the old state
  Object.assign(F.wi, { busy: "apply", error: "", note: "" });
  renderWiStatus();
  const done = [];
  let touched = false; // some change went through: the forecast shown is for the old state
  try {
    for (const c of req.body.counters) {
      try {
        await changeCounter(c.id, c, () => { touched = true; });
      } catch (e) {
        const n = counterName(c.id);
        throw new Error(`${esc(n.ja)} <span class="en">${esc(n.en)}</span>: ${errorText(e)}`);
      }
      done.push(c.id);
    }
    const names = done.map((id) => counterName(id));
    F.wi.note = `${esc(names.map((n) => n.ja).join("、"))}を変更しました <span class="en">${esc(names.map((n) => n.en).join(", "))} changed</span>`;
    say("info", F.wi.note);
  } catch (e) {
    F.wi.error = e.message;
  } finally {
    F.wi.changes = F.wi.changes.filter((ch) => !done.includes(ch.counter));
    F.wi.busy = "";
    if (touched && F.wi.result) F.wi.stale = true;
    renderWiChanges();
    renderWiResults();
    renderWiStatus();
    renderAll();
    if (touched) suggestionsSoon();
  }
}

/** Puts focus back on a control after its list was drawn again. */
function refocus(selector) {
  document.querySelector(selector)?.focus();
}

function wiChange(row) {
  return F.wi.changes.find((c) => c.counter === row?.dataset.wiCounter);
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest?.("button");
  if (!b || b.disabled) return;
  if (b.id === "wi-run") { runWhatIf(); return; }
  if (b.id === "wi-apply") { applyWhatIf(); return; }
  if (b.id === "wi-add-btn") {
    const id = $("wi-add").value;
    if (!id || F.wi.changes.some((c) => c.counter === id)) return;
    F.wi.changes.push(newChange(id));
    renderWiChanges();
    wiEdited();
    refocus(`#wi-changes [data-wi-counter="${CSS.escape(id)}"] [data-wi-state="${counterState(id) === "open" ? "" : "open"}"]`);
    return;
  }
  const notice = b.closest("#suggestions .suggestion");
  if (notice) {
    if (b.hasAttribute("data-suggest-apply")) applySuggestion(notice.dataset.key);
    else if (b.hasAttribute("data-suggest-try")) trySuggestion(notice.dataset.key);
    return;
  }
  const row = b.closest("#wi-changes [data-wi-counter]");
  const ch = wiChange(row);
  if (!ch) return;
  const sel = `#wi-changes [data-wi-counter="${CSS.escape(ch.counter)}"]`;
  if (b.hasAttribute("data-wi-remove")) {
    F.wi.changes = F.wi.changes.filter((c) => c !== ch);
    renderWiChanges();
    wiEdited();
    refocus("#wi-add");
  } else if (b.dataset.wiState !== undefined) {
    ch.state = b.dataset.wiState;
    renderWiChanges();
    wiEdited();
    refocus(`${sel} [data-wi-state="${CSS.escape(ch.state)}"]`);
  } else if (b.dataset.wiMove) {
    const q = b.dataset.wiQ, dir = b.dataset.wiMove;
    const i = ch.order.indexOf(q), j = dir === "up" ? i - 1 : i + 1;
    if (i < 0 || j < 0 || j >= ch.order.length || !ch.on.has(ch.order[j])) return;
    [ch.order[i], ch.order[j]] = [ch.order[j], ch.order[i]];
    renderWiChanges();
    wiEdited();
    refocus(`${sel} [data-wi-q="${CSS.escape(q)}"][data-wi-move="${dir}"]:not(:disabled)`);
  }
});

document.addEventListener("change", (ev) => {
  const t = ev.target;
  const row = t.closest?.("#wi-changes [data-wi-counter]");
  const ch = wiChange(row);
  if (!ch) return;
  const sel = `#wi-changes [data-wi-counter="${CSS.escape(ch.counter)}"]`;
  if (t.matches("input[type=checkbox][data-wi-queue]")) {
    const q = t.dataset.wiQueue;
    if (t.checked) ch.on.add(q); else ch.on.delete(q);
    // Ticked queues first, in their order; the others after them.
    ch.order = [...ch.order.filter((x) => ch.on.has(x)), ...ch.order.filter((x) => !ch.on.has(x))];
    renderWiChanges();
    wiEdited();
    refocus(`${sel} input[data-wi-queue="${CSS.escape(q)}"]`);
  } else if (t.matches("select[data-wi-strategy]")) {
    ch.strategy = t.value;
    wiEdited();
  }
});

document.addEventListener("input", (ev) => {
  const t = ev.target;
  if (t.matches?.("#whatif input[data-wi-extra]")) { F.wi.extra[t.dataset.wiExtra] = t.value; wiEdited(); }
  else if (t.id === "wi-horizon") { F.wi.horizon = t.value; wiEdited(); }
});

// ---------------------------------------------------------------------------------------------
// Suggestions (GET …/suggestions): the server's own "open this counter / give it this queue",
// shown unasked with a one-click Apply. Asked once at load and every 15 s, and again soon after a
// counter changes. A server without them (404) or a token that may not ask shows nothing.
// ---------------------------------------------------------------------------------------------
const SUGGEST_POLL_MS = 15000;
// Live events after which the server's suggestions may change at its next computation.
const SUGGESTION_EVENTS = new Set(["counter_state_changed", "profile_changed"]);
const sug = { timer: null, due: 0, inFlight: false, wanted: 0 };

const sugKey = (s) => `${s.queue}|${s.counter}|${s.kind}`;

function scheduleSuggestions(ms) {
  clearTimeout(sug.timer);
  sug.due = Date.now() + ms;
  sug.timer = setTimeout(pollSuggestions, ms);
}

async function pollSuggestions() {
  sug.timer = null;
  if (sug.inFlight) return;
  sug.inFlight = true;
  try {
    if (token() && F.catalog) {
      const r = await api("GET", `/api/v1/sites/${SITE_Q}/suggestions`, { token: token() });
      F.suggestions = Array.isArray(r?.suggestions) ? r.suggestions : [];
    } else {
      F.suggestions = [];
    }
  } catch (e) {
    // 404: this server has no suggestions (yet); 401/403: this token may not ask. Quietly none.
    // Otherwise (no network, 503…) what is shown stays until the next answer.
    if ([401, 403, 404].includes(e?.status)) F.suggestions = [];
  } finally {
    sug.inFlight = false;
  }
  renderSuggestions();
  let next = SUGGEST_POLL_MS;
  if (sug.wanted) { next = Math.max(0, Math.min(next, sug.wanted - Date.now())); sug.wanted = 0; }
  scheduleSuggestions(next);
}

/** After a counter change: ask again just after the server's next computation (every `suggest_every_s`). */
function suggestionsSoon() {
  const every = Number(F.catalog?.screens?.floor?.suggest_every_s) || 120;
  const ms = Math.min(SUGGEST_POLL_MS, (every + 1) * 1000);
  const at = Date.now() + ms;
  if (sug.inFlight) sug.wanted = sug.wanted ? Math.min(sug.wanted, at) : at;
  else if (!sug.timer || sug.due > at) scheduleSuggestions(ms);
}

function suggestionText(s) {
  if (s.text?.ja || s.text?.en) return `${esc(s.text.ja)} <span class="en">${esc(s.text.en)}</span>`;
  const c = counterName(s.counter), q = queueName(s.queue);
  const b = minutes(s.longest_wait_s_before), a = minutes(s.longest_wait_s_after);
  return s.kind === "add_queue"
    ? `${esc(c.ja)}を${esc(q.ja)}にも → 最長待ち ${b}分 → ${a}分 <span class="en">${esc(c.en)} also for ${esc(q.en)} → longest wait ${b} min → ${a} min</span>`
    : `${esc(c.ja)}を開く → ${esc(q.ja)}の最長待ち ${b}分 → ${a}分 <span class="en">Open ${esc(c.en)} → ${esc(q.en)} longest wait ${b} min → ${a} min</span>`;
}

/** Shows the suggestions: new ones added, gone ones removed, the others updated in place. */
function renderSuggestions() {
  const box = $("suggestions");
  if (!box) return;
  const list = token() && $("counters") ? F.suggestions : [];
  const keys = new Set(list.map(sugKey));
  for (const el of [...box.querySelectorAll(".suggestion")]) {
    if (!keys.has(el.dataset.key)) { el.remove(); F.sugState.delete(el.dataset.key); }
  }
  for (const s of list) {
    const key = sugKey(s);
    let el = [...box.querySelectorAll(".suggestion")].find((e) => e.dataset.key === key);
    if (!el) {
      el = document.createElement("div");
      el.className = "suggestion";
      el.setAttribute("role", "group");
      el.setAttribute("aria-label", "提案 / Suggestion");
      Object.assign(el.dataset, { key, queue: s.queue, counter: s.counter, kind: s.kind });
      el.innerHTML = `<span class="suggestion-tag">提案 <span class="en">Suggestion</span></span>
        <span class="suggestion-text"></span>
        <span class="suggestion-actions">
          <button type="button" class="mini suggestion-try" data-suggest-try>見込みで確認<span class="en">Try in what-if</span></button>
          <button type="button" class="mini suggestion-apply" data-suggest-apply></button>
        </span>
        <div class="suggestion-error" role="alert"></div>`;
      box.append(el);
    }
    const text = suggestionText(s);
    const t = el.querySelector(".suggestion-text");
    if (t.innerHTML !== text) t.innerHTML = text;
    const st = F.sugState.get(key) || {};
    const apply = el.querySelector("[data-suggest-apply]");
    const label = st.busy ? `適用中…<span class="en">Applying…</span>` : st.applied ? `適用済み<span class="en">Applied</span>` : `適用<span class="en">Apply</span>`;
    if (apply.innerHTML !== label) apply.innerHTML = label;
    apply.disabled = !!(st.busy || st.applied);
    el.querySelector("[data-suggest-try]").disabled = !!st.busy;
    el.toggleAttribute("data-applied", !!st.applied);
    const err = el.querySelector(".suggestion-error");
    if (err.innerHTML !== (st.error || "")) err.innerHTML = st.error || "";
  }
}

/** Applies a suggestion through the usual endpoints (see the suggestions contract). */
async function applySuggestion(key) {
  const s = F.suggestions.find((x) => sugKey(x) === key);
  if (!s || F.sugState.get(key)?.busy) return;
  F.sugState.set(key, { busy: true });
  renderSuggestions();
  try {
    const profile = s.kind !== "open" && s.profile ? s.profile : null;
    await changeCounter(s.counter, { profile, state: s.state || "open", always: s.kind === "open" });
    F.sugState.set(key, { applied: true });
    say("info", `提案を適用しました：${suggestionText(s)}`);
    suggestionsSoon();
  } catch (e) {
    F.sugState.set(key, { error: errorText(e) });
  }
  renderSuggestions();
  renderAll();
}

/** Loads a suggestion's change into the what-if panel and runs it. */
function trySuggestion(key) {
  const s = F.suggestions.find((x) => sugKey(x) === key);
  if (!s || !$("whatif")) return;
  const profile = s.profile?.queues?.length ? s.profile : profileOf(s.counter);
  F.wi.changes = [newChange(s.counter, { state: s.state || "open", profile })];
  F.wi.note = "";
  renderWiChanges();
  $("whatif").scrollIntoView({ behavior: "smooth", block: "start" });
  runWhatIf();
}

// ---------------------------------------------------------------------------------------------
// Booking slots (予約枠): a day's slots of every queue that takes bookings, with their bookings,
// and each slot's capacity to set (PUT …/queues/{queue}/slot-capacity). The day shown first is
// the first from today with a slot still to come. Hidden at a site that takes no bookings (the
// slots answer 404 no_reservations). Read again after a change, on the live feed's booking events
// and every minute (a slot that begins takes no more bookings).
// ---------------------------------------------------------------------------------------------
const SLOT_EVENTS = new Set(["reservation_made", "reservation_moved", "reservation_cancelled", "slot_capacity_set"]);
const SLOTS_POLL_MS = 60000;
/** How many days from today the first day with slots is looked for (bookings go 28 days ahead in the demo). */
const SLOT_SEARCH_DAYS = 35;
const WEEKDAYS = { ja: "日月火水木金土", en: ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"] };
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

const siteToday = () => todayAt(tz());
const slotKey = (queue, start) => `${queue}|${start}`;
const noReservations = (e) => e?.status === 404 && e?.code === "no_reservations";

/** `date` ("2026-12-08") plus `n` days. */
function addDays(date, n) {
  const [y, m, d] = date.split("-").map(Number);
  return new Date(Date.UTC(y, m - 1, d + n)).toISOString().slice(0, 10);
}

/** {ja: "12月8日（火）", en: "Tue, Dec 8"}. */
function dayLabel(date) {
  const [y, m, d] = date.split("-").map(Number);
  const wd = new Date(Date.UTC(y, m - 1, d)).getUTCDay();
  return { ja: `${m}月${d}日（${WEEKDAYS.ja[wd]}）`, en: `${WEEKDAYS.en[wd]}, ${MONTHS[m - 1]} ${d}` };
}

/** "9:00–9:30", in the site's time as the slot's times are written. */
function slotTime(s) {
  const a = wallClock(s.start), b = wallClock(s.end);
  return a && b ? `${timeText(a, "ja")}–${timeText(b, "ja")}` : String(s.start);
}

/**
 * What a slot is now: "past" (it has begun), "later" (beyond the booking horizon: no places yet),
 * "stopped" (capacity 0, nobody booked), "full" (booked up to or above its capacity) or "open".
 */
function slotState(s) {
  if (Date.parse(s.start) <= Date.now()) return "past";
  if (s.booked >= s.capacity) return s.capacity === 0 && s.booked === 0 ? "stopped" : "full";
  return s.free > 0 ? "open" : "later";
}
const SLOT_BADGE = {
  past: ["開始済み", "Started"],
  later: ["予約受付前", "Not bookable yet"],
  stopped: ["予約停止", "No bookings"],
  full: ["満員", "Full"],
};

function readSlots(date) {
  return api("GET", `/api/v1/sites/${SITE_Q}/reservations/slots?date=${encodeURIComponent(date)}`, { token: token() });
}

/** The panel's frame; renderSlots fills it from F.slots. */
function slotsPanel() {
  return `<section class="card" id="slots" aria-labelledby="slots-h" hidden>
    <h2 id="slots-h">予約枠 <span class="en">Booking slots</span></h2>
    <div class="slots-bar">
      <button type="button" class="mini" id="slots-prev" data-slots-step="-1" aria-label="前の日 / Previous day">◀</button>
      <label for="slots-date" class="slots-date-label">日付 <span class="en">Date</span></label>
      <input type="date" id="slots-date" required>
      <button type="button" class="mini" id="slots-next" data-slots-step="1" aria-label="次の日 / Next day">▶</button>
      <span class="slots-day" id="slots-day"></span>
    </div>
    <p class="served slots-lead">定員を変えると、その枠の予約できる人数が変わります。すでにある予約はそのまま残ります。
      <span class="en">A slot's capacity is how many may book it; bookings already made stay.</span></p>
    <div class="slots-load-error" id="slots-load-error"></div>
    <div id="slots-list"></div>
    <div class="slots-note" id="slots-note" role="status"></div>
  </section>`;
}

function slotRow(s) {
  const key = slotKey(s.queue, s.start);
  const state = slotState(s);
  const busy = F.slots.busy === key;
  const failed = F.slots.error && F.slots.errorKey === key;
  const value = F.slots.drafts.get(key) ?? String(s.capacity);
  const time = slotTime(s);
  const [bja, ben] = SLOT_BADGE[state] || [];
  const n = s.booked - s.capacity;
  const over = n > 0 ? ` <span class="slot-over">定員超過 ${n} <span class="en">${n} over</span></span>` : "";
  const badge = bja ? `<span class="slot-badge" data-state="${state}">${esc(bja)} <span class="en">${esc(ben)}</span></span>` : "";
  const row = `<tr data-slot-start="${esc(s.start)}" data-slot-queue="${esc(s.queue)}" data-state="${state}"
      data-capacity="${s.capacity}" data-booked="${s.booked}" data-free="${s.free}"${failed ? ` class="has-error"` : ""}>
    <td class="slot-time num">${esc(time)}</td>
    <td class="slot-fig"><span class="slot-nums">予約 <b class="num">${s.booked}</b> / 定員 <b class="num">${s.capacity}</b>（空き <b class="num">${s.free}</b>）</span>
      <span class="slot-sub">${badge}${over} <span class="en">booked ${s.booked} / capacity ${s.capacity} (${s.free} free)</span></span></td>
    <td class="slot-set">
      <input type="number" min="0" max="999" step="1" inputmode="numeric" data-slot-input value="${esc(value)}"
        aria-label="${esc(time)} の定員 / Capacity of ${esc(time)}"${failed ? ` aria-invalid="true" aria-describedby="slots-error"` : ""}
        ${busy || state === "past" ? "disabled" : ""}>
      <button type="button" class="mini" data-slot-set ${busy || state === "past" ? "disabled" : ""}>${busy ? "変更中…" : "変更"}<span class="en">${busy ? "Setting…" : "Set"}</span></button>
    </td>
  </tr>`;
  return failed
    ? `${row}<tr class="slot-msg"><td colspan="3"><div class="slot-error" id="slots-error" role="alert">${F.slots.error}</div></td></tr>`
    : row;
}

function slotsListHtml() {
  const list = F.slots.list;
  if (!list) return `<p class="muted slots-empty">読み込み中… <span class="en">Loading…</span></p>`;
  if (!list.length) {
    return `<p class="muted slots-empty">この日は予約枠がありません（土日・祝日など）。 <span class="en">No booking slots on this day (a weekend or a holiday).</span></p>`;
  }
  const order = (F.catalog?.queues || []).map((q) => q.id);
  const queues = [...new Set(list.map((s) => s.queue))]
    .sort((a, b) => (order.indexOf(a) + 1 || Infinity) - (order.indexOf(b) + 1 || Infinity));
  return queues.map((q) => {
    const slots = list.filter((s) => s.queue === q);
    const booked = slots.reduce((a, s) => a + s.booked, 0), capacity = slots.reduce((a, s) => a + s.capacity, 0);
    return `<div class="slots-queue" data-slots-queue="${esc(q)}">
      <h3>${bilingual(queueName(q))} <span class="served">予約 ${booked} / 定員 ${capacity} <span class="en">${booked} booked of ${capacity}</span></span></h3>
      <table class="slots-table"><thead><tr><th>時間<span class="en">Time</span></th><th>予約 / 定員<span class="en">Booked / capacity</span></th>
        <th>定員の変更<span class="en">New capacity</span></th></tr></thead>
      <tbody>${slots.map(slotRow).join("")}</tbody></table>
    </div>`;
  }).join("");
}

let slotsHtml = "";
/** Fills the panel from F.slots; the list is drawn again only when what it shows changed. */
function renderSlots() {
  const box = $("slots");
  if (!box) return;
  const S = F.slots;
  box.hidden = S.off || !S.date;
  box.dataset.state = S.off ? "off" : S.list ? "ready" : "loading";
  if (box.hidden) return;
  box.dataset.date = S.date;
  const input = $("slots-date");
  const today = siteToday();
  if (input.value !== S.date && document.activeElement !== input) input.value = S.date;
  input.min = today;
  $("slots-prev").disabled = S.date <= today;
  const day = dayLabel(S.date);
  $("slots-day").innerHTML = `${esc(day.ja)} <span class="en">${esc(day.en)}</span>`;
  const loadError = S.loadError
    ? `読み込めませんでした（前回の内容を表示しています） <span class="en">Could not read the slots (showing the last read)</span> — ${S.loadError}` : "";
  if ($("slots-load-error").innerHTML !== loadError) $("slots-load-error").innerHTML = loadError;
  if ($("slots-note").innerHTML !== S.note) $("slots-note").innerHTML = S.note;
  const html = slotsListHtml();
  if (html === slotsHtml && $("slots-list").childElementCount) return;
  // Drawn again: focus goes back to the control it was on.
  const active = document.activeElement;
  const row = active?.closest?.("#slots-list tr[data-slot-start]");
  const focus = row && `#slots-list tr[data-slot-start="${CSS.escape(row.dataset.slotStart)}"][data-slot-queue="${CSS.escape(row.dataset.slotQueue)}"] ${active.matches("input") ? "input" : "button"}`;
  slotsHtml = html;
  $("slots-list").innerHTML = html;
  if (focus) refocus(focus);
}

/** Finds the first day from today with a slot still to come (today's may all have begun), and shows it. */
async function findSlotDay() {
  const run = ++F.slots.run;
  const first = siteToday();
  try {
    let shown = null;
    for (let i = 0; i < SLOT_SEARCH_DAYS && !shown; i++) {
      const date = addDays(first, i);
      const slots = (await readSlots(date))?.slots || [];
      if (run !== F.slots.run) return;
      if (slots.some((s) => Date.parse(s.start) > Date.now())) shown = { date, slots };
    }
    shown ??= { date: first, slots: (await readSlots(first))?.slots || [] };
    if (run !== F.slots.run) return;
    Object.assign(F.slots, { found: true, date: shown.date, list: shown.slots, loadError: "" });
  } catch (e) {
    if (run !== F.slots.run) return;
    if (noReservations(e)) F.slots.off = true;
    else Object.assign(F.slots, { date: F.slots.date || first, loadError: errorText(e) });
  }
  renderSlots();
}

/** Reads the day shown again (quietly: what is shown stays until the answer). */
async function loadSlots() {
  if (!F.slots.found) { findSlotDay(); return; }
  const run = ++F.slots.run;
  const date = F.slots.date;
  try {
    const r = await readSlots(date);
    if (run !== F.slots.run) return;
    Object.assign(F.slots, { list: r?.slots || [], loadError: "" });
  } catch (e) {
    if (run !== F.slots.run) return;
    if (noReservations(e)) F.slots.off = true;
    else F.slots.loadError = errorText(e);
  }
  renderSlots();
}

function showSlotDay(date) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(date) || date === F.slots.date) return;
  Object.assign(F.slots, { found: true, date, list: null, note: "", error: "", errorKey: "", loadError: "" });
  F.slots.drafts.clear();
  renderSlots();
  loadSlots();
}

let slotsReload = null;
/** After a booking event on the live feed: read the day again (once for a burst). */
function slotsSoon() {
  if (F.slots.off || !F.slots.found) return;
  clearTimeout(slotsReload);
  slotsReload = setTimeout(loadSlots, 200);
}

/** Sets a slot's capacity to what its row's input holds. */
async function setCapacity(queue, start) {
  const S = F.slots;
  const key = slotKey(queue, start);
  const slot = S.list?.find((s) => s.queue === queue && s.start === start);
  if (!slot || S.busy) return;
  const raw = String(S.drafts.get(key) ?? slot.capacity).trim();
  const time = slotTime(slot), q = queueName(queue);
  const what = { ja: `${esc(time)}（${esc(q.ja)}）`, en: `${esc(time)} (${esc(q.en)})` };
  const sel = `#slots-list tr[data-slot-start="${CSS.escape(start)}"][data-slot-queue="${CSS.escape(queue)}"] input`;
  if (!/^\d+$/.test(raw)) {
    Object.assign(S, { note: "", errorKey: key,
      error: `${what.ja}：定員は0〜999の整数で入力してください <span class="en">${what.en}: the capacity is a whole number from 0 to 999</span>` });
    renderSlots();
    refocus(sel);
    return;
  }
  Object.assign(S, { busy: key, note: "", error: "", errorKey: "" });
  renderSlots();
  try {
    const r = await api("PUT", `/api/v1/sites/${SITE_Q}/queues/${encodeURIComponent(queue)}/slot-capacity`,
      { token: token(), body: { start, capacity: Number(raw) } });
    S.drafts.delete(key);
    // The slot as the server answered, at once; the whole day is read again below.
    const i = S.list?.findIndex((s) => s.queue === r?.queue && Date.parse(s.start) === Date.parse(r?.start)) ?? -1;
    if (i >= 0) S.list[i] = { ...S.list[i], ...r, start: S.list[i].start };
    S.note = `${what.ja}の定員を ${esc(r?.capacity ?? raw)} にしました <span class="en">${what.en}: capacity set to ${esc(r?.capacity ?? raw)}</span>`;
    say("info", S.note);
  } catch (e) {
    if (noReservations(e)) S.off = true;
    Object.assign(S, { error: `${what.ja}：${errorText(e)}`, errorKey: key });
  } finally {
    S.busy = "";
    renderSlots();
    refocus(S.error ? sel : sel.replace(/ input$/, " button"));
    loadSlots();
  }
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest?.("#slots button");
  if (!b || b.disabled) return;
  if (b.dataset.slotsStep) { showSlotDay(addDays(F.slots.date || siteToday(), Number(b.dataset.slotsStep))); return; }
  const row = b.closest("tr[data-slot-start]");
  if (row && b.hasAttribute("data-slot-set")) setCapacity(row.dataset.slotQueue, row.dataset.slotStart);
});

document.addEventListener("input", (ev) => {
  const t = ev.target;
  const row = t.matches?.("#slots-list input[data-slot-input]") && t.closest("tr[data-slot-start]");
  if (row) F.slots.drafts.set(slotKey(row.dataset.slotQueue, row.dataset.slotStart), t.value);
});

document.addEventListener("keydown", (ev) => {
  const t = ev.target;
  if (ev.key !== "Enter" || !t.matches?.("#slots-list input[data-slot-input]")) return;
  ev.preventDefault();
  const row = t.closest("tr[data-slot-start]");
  setCapacity(row.dataset.slotQueue, row.dataset.slotStart);
});

document.addEventListener("change", (ev) => {
  if (ev.target.id === "slots-date") showSlotDay(ev.target.value);
});

setInterval(() => { if (F.catalog && !F.slots.off) loadSlots(); }, SLOTS_POLL_MS);

// ---------------------------------------------------------------------------------------------
// Integrations (外部連携): the site's webhook subscribers (the counter-support system, a LINE or
// SMS gateway…) with how far each has been sent, an event being retried, and the dead letters,
// events a subscriber did not take after every try, each with 「今すぐ再送」 (POST
// …/webhooks/{hook}/dead/{seq}/retry: 200 delivered, it leaves the list; 502 delivery_failed, it
// stays with the receiver's answer under it). GET …/webhooks every 10 s and after a retry; the
// panel is hidden while the site has no subscribers.
// ---------------------------------------------------------------------------------------------
const HOOKS_POLL_MS = 10000;
const HOOK_KINDS = {
  "ticket.issued": ["発券", "ticket issued"],
  "ticket.called": ["呼出", "ticket called"],
  "ticket.transferred": ["窓口間の引継ぎ", "ticket transferred"],
  "visit.completed": ["来庁完了", "visit completed"],
  "satisfaction.given": ["満足度の回答", "satisfaction given"],
  "printer.needs_staff": ["プリンター要対応", "printer needs staff"],
  "reservation.made": ["予約", "reservation made"],
  "reservation.changed": ["予約の変更", "reservation changed"],
  "reservation.cancelled": ["予約の取消", "reservation cancelled"],
};
const deadKey = (hook, seq) => `${hook}|${seq}`;
const kindLabel = (k) => HOOK_KINDS[k] || [k, k];

/** A time from the server in the site's time: "14:05", or "12/7 14:05" on another day. */
function localTime(t) {
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t ?? "");
  const time = clock(d, tz()), day = todayAt(tz(), d.getTime());
  if (day === siteToday()) return time;
  const [, m, dd] = day.split("-").map(Number);
  return `${m}/${dd} ${time}`;
}

/** What the panel's lists show now (they are drawn again only when it changes). */
let hooksHtml = "", deadHtml = "";

/** The panel's frame, new and empty (for the token just entered); renderIntegrations fills it from F.hooks. */
function integrationsPanel() {
  Object.assign(F.hooks, { off: true, list: null, dead: [], seq: 0, note: "", loadError: "" });
  F.hooks.errors.clear();
  F.hooks.run++; // a read under way is for the token before
  hooksHtml = deadHtml = "";
  return `<section class="card" id="integrations" aria-labelledby="integrations-h" hidden>
    <h2 id="integrations-h">外部連携 <span class="en">Integrations</span></h2>
    <div class="hooks-load-error" id="hooks-load-error" role="status"></div>
    <ul class="hooks" id="hooks-list" aria-label="送信先 / Subscribers"></ul>
    <h3 id="dead-h">送信できなかったイベント <span class="en">Dead letters</span> <span class="dead-count" id="dead-count"></span></h3>
    <div id="dead-list"></div>
    <div class="hooks-note" id="hooks-note" role="status"></div>
  </section>`;
}

function hookHtml(h) {
  const behind = Number(h.behind) || 0;
  const events = (h.events || []).map((k) => {
    const [ja, en] = kindLabel(k);
    return `<span class="chip hook-event" data-kind="${esc(k)}" title="${esc(k)}">${esc(ja)} <span class="en">${esc(en)}</span></span>`;
  }).join("");
  const progress = `未送信 <b class="num">${behind}</b> 件 <span class="en">${behind ? `${behind} not sent yet` : "up to date"}</span>`;
  const r = h.retrying;
  const retrying = r
    ? `<div class="hook-retrying" role="status" data-seq="${esc(r.seq)}">再送中：イベント #${esc(r.seq)}・失敗 ${esc(r.attempts)} 回・${esc(r.error)}
        <span class="en">Retrying event #${esc(r.seq)}, ${esc(r.attempts)} failed ${Number(r.attempts) === 1 ? "try" : "tries"}: ${esc(r.error)}</span></div>`
    : "";
  const standby = h.active === false
    ? `<div class="hook-standby">このサーバーは待機中です（別のサーバーが送信しています） <span class="en">Standby: another server delivers</span></div>`
    : "";
  return `<li class="hook" data-hook="${esc(h.name)}" data-behind="${behind}" data-active="${h.active === false ? "false" : "true"}"${r ? ` data-retrying="${esc(r.seq)}"` : ""}>
    <div class="hook-head"><b class="hook-name">${esc(h.name)}</b><span class="hook-endpoint">${esc(h.endpoint)}</span>
      <span class="hook-behind${behind ? " late" : ""}">${progress}</span></div>
    <div class="hook-sub served">イベント #${esc(h.delivered_seq)} まで送信済み（最新 #${esc(F.hooks.seq)}） <span class="en">sent up to event #${esc(h.delivered_seq)} (latest #${esc(F.hooks.seq)})</span></div>
    <div class="hook-events">${events}</div>
    ${retrying}${standby}
  </li>`;
}

function deadRow(d) {
  const key = deadKey(d.hook, d.seq);
  const busy = F.hooks.busy.has(key);
  const error = F.hooks.errors.get(key);
  const [ja, en] = kindLabel(d.kind);
  const id = `dead-error-${String(d.hook).replace(/[^A-Za-z0-9_-]/g, "_")}-${Number(d.seq) || 0}`;
  const row = `<tr data-dead-hook="${esc(d.hook)}" data-dead-seq="${esc(d.seq)}" data-kind="${esc(d.kind)}"${error ? ` class="has-error"` : ""}>
    <td class="dead-event"><b class="num">#${esc(d.seq)}</b><div class="served">${esc(ja)} <span class="en">${esc(d.kind)}</span></div></td>
    <td class="dead-hook"><b>${esc(d.hook)}</b><div class="served">${esc(d.attempts)} 回 <span class="en">${esc(d.attempts)} ${Number(d.attempts) === 1 ? "try" : "tries"}</span></div></td>
    <td class="dead-last"><span class="dead-error-text">${esc(d.error)}</span>
      <div class="served"><time datetime="${esc(d.failed_at)}" title="${esc(d.failed_at)}">${esc(localTime(d.failed_at))}</time></div></td>
    <td class="dead-act"><button type="button" class="mini" data-dead-retry ${busy ? "disabled" : ""}
        aria-label="イベント #${esc(d.seq)}（${esc(ja)}）を ${esc(d.hook)} へ今すぐ再送 / Retry event #${esc(d.seq)} (${esc(en)}) to ${esc(d.hook)} now"
        ${error ? `aria-describedby="${id}"` : ""}>${busy ? "再送中…" : "今すぐ再送"}<span class="en">${busy ? "Retrying…" : "Retry now"}</span></button></td>
  </tr>`;
  return error
    ? `${row}<tr class="dead-msg" data-dead-msg="${esc(key)}"><td colspan="4"><div class="dead-error" id="${id}" role="alert">${error}</div></td></tr>`
    : row;
}

function deadListHtml() {
  const dead = F.hooks.dead;
  if (!dead.length) return `<p class="muted dead-empty">ありません <span class="en">None</span></p>`;
  return `<table class="dead-table"><thead><tr><th>イベント<span class="en">Event</span></th><th>送信先・試行<span class="en">To · tries</span></th>
      <th>最後のエラー・時刻<span class="en">Last error · time</span></th><th></th></tr></thead>
    <tbody>${dead.map(deadRow).join("")}</tbody></table>`;
}

/** Fills the panel from F.hooks; a list is drawn again only when what it shows changed. */
function renderIntegrations() {
  const box = $("integrations");
  if (!box) return;
  const H = F.hooks;
  box.hidden = H.off || !H.list?.length;
  box.dataset.state = H.off ? "off" : H.list ? "ready" : "loading";
  if (box.hidden) return;
  box.dataset.dead = String(H.dead.length);
  const loadError = H.loadError
    ? `読み込めませんでした（前回の内容を表示しています） <span class="en">Could not read the integrations (showing the last read)</span> — ${H.loadError}` : "";
  if ($("hooks-load-error").innerHTML !== loadError) $("hooks-load-error").innerHTML = loadError;
  if ($("hooks-note").innerHTML !== H.note) $("hooks-note").innerHTML = H.note;
  const count = H.dead.length ? `${H.dead.length} 件` : "";
  if ($("dead-count").textContent !== count) $("dead-count").textContent = count;
  const hooks = H.list.map(hookHtml).join("");
  if (hooks !== hooksHtml) { hooksHtml = hooks; $("hooks-list").innerHTML = hooks; }
  const dead = deadListHtml();
  if (dead === deadHtml && $("dead-list").childElementCount) return;
  // Drawn again: focus goes back to the button it was on.
  const row = document.activeElement?.closest?.("#dead-list tr[data-dead-seq]");
  const focus = row && `#dead-list tr[data-dead-hook="${CSS.escape(row.dataset.deadHook)}"][data-dead-seq="${CSS.escape(row.dataset.deadSeq)}"] button`;
  deadHtml = dead;
  $("dead-list").innerHTML = dead;
  if (focus) refocus(focus);
}

/** Reads the subscribers and dead letters again (what is shown stays until the answer). */
async function loadIntegrations() {
  const H = F.hooks;
  if (!token() || !F.catalog) return;
  const run = ++H.run;
  try {
    const r = await api("GET", `/api/v1/sites/${SITE_Q}/webhooks`, { token: token() });
    if (run !== H.run) return;
    const list = Array.isArray(r?.hooks) ? r.hooks : [];
    const dead = Array.isArray(r?.dead_letters) ? r.dead_letters : [];
    // Errors of retries stay only while their dead letter does.
    const keys = new Set(dead.map((d) => deadKey(d.hook, d.seq)));
    for (const k of [...H.errors.keys()]) if (!keys.has(k)) H.errors.delete(k);
    Object.assign(H, { off: !list.length, list, dead, seq: Number(r?.seq) || 0, loadError: "" });
  } catch (e) {
    if (run !== H.run) return;
    // 401/403: this token may not see them; 404: a server without integrations. Quietly none.
    if ([401, 403, 404].includes(e?.status)) Object.assign(H, { off: true, list: null, dead: [] });
    else H.loadError = errorText(e);
  }
  renderIntegrations();
}

/** 「今すぐ再送」: sends a dead letter again, once, now. */
async function retryDead(hook, seq) {
  const H = F.hooks;
  const key = deadKey(hook, seq);
  const d = H.dead.find((x) => deadKey(x.hook, x.seq) === key);
  if (!d || H.busy.has(key)) return;
  const [ja, en] = kindLabel(d.kind);
  const what = { ja: `イベント #${esc(seq)}（${esc(ja)}）`, en: `Event #${esc(seq)} (${esc(en)})` };
  H.busy.add(key);
  H.errors.delete(key);
  H.note = "";
  H.run++; // a read under way is of the list before this retry
  renderIntegrations();
  try {
    await api("POST", `/api/v1/sites/${SITE_Q}/webhooks/${encodeURIComponent(hook)}/dead/${encodeURIComponent(seq)}/retry`,
      { token: token() });
    H.dead = H.dead.filter((x) => deadKey(x.hook, x.seq) !== key);
    H.note = `${what.ja}を ${esc(hook)} へ再送しました <span class="en">${what.en} sent again to ${esc(hook)}</span>`;
    say("info", H.note);
  } catch (e) {
    if (e?.status === 404 && e?.code === "unknown_dead_letter") {
      // Sent or gone meanwhile (another floor screen): it leaves the list.
      H.dead = H.dead.filter((x) => deadKey(x.hook, x.seq) !== key);
      H.note = `${what.ja}はもう一覧にありません <span class="en">${what.en} is no longer a dead letter</span>`;
    } else if (e?.status === 502) {
      H.errors.set(key, `${esc(e.message)} <span class="en">(${esc(e.code)})</span>`);
    } else {
      H.errors.set(key, errorText(e));
    }
  } finally {
    H.busy.delete(key);
    renderIntegrations();
    refocus(H.errors.has(key)
      ? `#dead-list tr[data-dead-hook="${CSS.escape(hook)}"][data-dead-seq="${CSS.escape(String(seq))}"] button`
      : "#dead-list button[data-dead-retry]:not(:disabled)");
    loadIntegrations();
  }
}

document.addEventListener("click", (ev) => {
  const b = ev.target.closest?.("#dead-list button[data-dead-retry]");
  if (!b || b.disabled) return;
  const row = b.closest("tr[data-dead-seq]");
  if (row) retryDead(row.dataset.deadHook, row.dataset.deadSeq);
});

setInterval(() => { if (F.catalog && $("integrations")) loadIntegrations(); }, HOOKS_POLL_MS);

// ---------------------------------------------------------------------------------------------
// Live data
// ---------------------------------------------------------------------------------------------
let catalogReload = null;
function onBoard(board, event) {
  F.board = board;
  for (const bc of board.counters || []) { const c = catCounter(bc.id); if (c) c.state = bc.state; }
  if (!event || AUDITED.has(event.kind)) loadAudit();
  if (event && SUGGESTION_EVENTS.has(event.kind)) suggestionsSoon();
  if (event && SLOT_EVENTS.has(event.kind)) slotsSoon();
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
  const row = b.closest("#queues [data-queue]");
  if (row && b.dataset.receptionMode) { receptionAction(row.dataset.queue, b.dataset.receptionMode); return; }
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
  findSlotDay();
}
boot();
