// The status page (/): a site's calls, waiting counts and counters live, with links to its screens.
// No token.
import { LiveFeed, esc, clock } from "/assets/common.js";

const $ = (id) => document.getElementById(id);
const STATE = { open: "受付中 / Open", paused: "一時停止 / Paused", closed: "休止 / Closed" };
const STATUS = { called: "呼出中 / Called", serving: "対応中 / Serving" };
let catalog = null;

function name(list, id) { const x = (list || []).find((e) => e.id === id); return x ? `${esc(x.name.ja)} <span class="en">${esc(x.name.en)}</span>` : esc(id); }
function minutes(s) { return s < 60 ? "すぐ / soon" : `約${Math.round(s / 60)}分 / ~${Math.round(s / 60)} min`; }
function time(t) { return clock(t, catalog.site.timezone); }

function render(board) {
  $("calls").innerHTML = board.recent_calls.slice(0, 6).map((c) =>
    `<tr><td class="big">${esc(c.number)}</td><td>${name(catalog.counters, c.counter)}</td><td>${time(c.at)}</td></tr>`).join("")
    || `<tr><td colspan="3">—</td></tr>`;
  $("queues").innerHTML = board.queues.map((q) =>
    `<tr><td>${name(catalog.queues, q.id)}</td><td class="num">${q.waiting}</td><td class="num">${minutes(q.estimated_wait_s)}</td></tr>`).join("");
  $("counters").innerHTML = board.counters.map((c) =>
    `<tr><td>${name(catalog.counters, c.id)}</td><td class="state-${esc(c.state)}">${STATE[c.state]}</td><td>${c.ticket ? `<b>${esc(c.ticket.number)}</b> ${STATUS[c.ticket.status] || ""}` : "—"}</td></tr>`).join("");
}

function live(up) {
  $("conn").textContent = up ? "接続中 / live" : "再接続中… / reconnecting…";
  $("conn").className = up ? "" : "down";
}

async function start() {
  const sites = (await (await fetch("/api/v1/sites")).json()).sites;
  const wanted = new URLSearchParams(location.search).get("site") || sites[0].id;
  $("site").innerHTML = sites.map((s) => `<option value="${esc(s.id)}" ${s.id === wanted ? "selected" : ""}>${esc(s.name.ja)} / ${esc(s.name.en)}</option>`).join("");
  $("site").addEventListener("change", (e) => { location.search = `?site=${encodeURIComponent(e.target.value)}`; });
  catalog = await (await fetch(`/api/v1/sites/${encodeURIComponent(wanted)}/catalog`)).json();
  const w = encodeURIComponent(wanted);
  const kiosk = catalog.dispensers[0] ? `?dispenser=${encodeURIComponent(catalog.dispensers[0].id)}` : "";
  const counter = catalog.counters[0] ? `?counter=${encodeURIComponent(catalog.counters[0].id)}` : "";
  $("screens").innerHTML = [
    [`/screens/lobby/${w}`, "ロビー表示 / Lobby"],
    [`/screens/kiosk/${w}${kiosk}`, "発券機 / Kiosk"],
    [`/screens/counter/${w}${counter}`, "窓口端末 / Counter"],
    [`/screens/floor/${w}`, "フロア管理 / Floor"],
    [`/screens/kpi/${w}`, "KPI"],
  ].map(([href, label]) => `<a href="${href}">${label}</a>`).join("");
  document.title = `${catalog.site.name.ja} — 受付状況 / Status`;
  // Every snapshot and event carries the whole board; the feed asks for a fresh one after a gap.
  new LiveFeed(wanted, { onSnapshot: render, onEvent: (_e, b) => render(b), onStatus: live });
}
start().catch(() => { $("conn").textContent = "サーバーに接続できません / cannot reach the server"; $("conn").className = "down"; });
