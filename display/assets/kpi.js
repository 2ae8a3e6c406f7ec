// The KPI page (/screens/kpi/{site}, `all` for the city): stay time against the target, waits by
// hour, visits and satisfaction against the year's targets, bookings, the visits handed over to
// the counter-support system (窓口DX連携); the CSV export. Needs an analyst token.
import { api, ApiError, loadCatalog, esc, siteFromPath, DeviceToken, say as sayIn } from "/assets/common.js";

const $ = (id) => document.getElementById(id);
const SITE = siteFromPath();
const SITE_Q = encodeURIComponent(SITE);
const ALL = SITE === "all";

const S = {
  tz: "Asia/Tokyo",
  catalog: null,
  sites: [],
  from: "", to: "", lifeEvent: "", procedure: "",
  targets: new Map(),      // fiscal year → [{id, name, target_mean}] life events with a stay target
  data: null,              // the last rendered responses
  seq: 0,
  started: false,
  hooks: null,             // the site's webhook subscribers (null: not known, e.g. for `all`)
};

// ---------------------------------------------------------------------------------------------
// Token: once per device; `#token=…` in the address stores it once and is stripped.
// ---------------------------------------------------------------------------------------------
const deviceToken = new DeviceToken("analyst", {
  onAddress: () => { $("token-root").innerHTML = ""; start(); },
});
const token = () => deviceToken.value;

function askToken(reason = "") {
  $("token-root").innerHTML = `
    <div class="overlay" role="dialog" aria-modal="true" aria-labelledby="token-title">
      <form class="dialog" id="token-form" autocomplete="off">
        <h2 id="token-title">分析担当のトークン <span class="en">Analyst token</span></h2>
        ${reason ? `<p class="err" id="token-error">${reason}</p>` : ""}
        <p>この端末でKPIを表示するためのトークンを入力してください（一度だけ）。<br>
          <span class="en">Enter the analyst token for this device (asked once).</span></p>
        <label for="token" class="muted" style="font-size:.8rem">トークン <span class="en">Token</span></label>
        <input id="token" type="password" autocomplete="off" spellcheck="false">
        <div class="row">${token() && !reason ? `<button type="button" class="btn secondary" id="cancel-token">キャンセル <span class="en">Cancel</span></button>` : ""}<button type="submit" class="btn" id="save-token">保存して表示 <span class="en">Save &amp; show</span></button></div>
      </form>
    </div>`;
  setTimeout(() => $("token")?.focus(), 0);
}

document.addEventListener("submit", (ev) => {
  if (ev.target.id !== "token-form") return;
  ev.preventDefault();
  const v = $("token").value.trim();
  if (!v) {
    $("token").focus();
    return;
  }
  deviceToken.save(v);
  $("token-root").innerHTML = "";
  start();
});

function authFailed(e) {
  deviceToken.clear();
  askToken(e.status === 401
    ? "トークンが無効です。もう一度入力してください。<br><span class=\"en\">The token is not valid. Please enter it again.</span>"
    : "このトークンではKPIを表示できません（分析担当の権限が必要です）。<br><span class=\"en\">This token may not read the KPI: an analyst token is needed.</span>");
}

// ---------------------------------------------------------------------------------------------
// Messages
// ---------------------------------------------------------------------------------------------
function say(kind, html, retry = false) {
  sayIn(kind, `<span>${html}</span>${retry ? `<button type="button" class="btn" id="retry">再試行 <span class="en">Retry</span></button>` : ""}`);
}
const clearMessage = () => { $("message").innerHTML = ""; };

function showError(e) {
  if (e instanceof ApiError && (e.status === 401 || e.status === 403)) return authFailed(e);
  if (e instanceof ApiError && (e.status === 0 || e.status === 503)) {
    say("error", `<b>サーバーに接続できません</b> <span class="en">Cannot reach the server.</span> ${esc(e.status ? e.message : "")}`, true);
    return;
  }
  const text = e instanceof ApiError ? `${esc(e.message)} <span class="en">(${esc(e.code)})</span>` : esc(String(e?.message || e));
  say("error", `<b>表示できません</b> <span class="en">Could not load</span> — ${text}`, true);
}

// ---------------------------------------------------------------------------------------------
// Dates (local calendar days as "YYYY-MM-DD"; arithmetic in UTC to avoid DST surprises)
// ---------------------------------------------------------------------------------------------
const pad = (n) => String(n).padStart(2, "0");
const ymd = (d) => `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
const parseYmd = (s) => { const [y, m, d] = s.split("-").map(Number); return new Date(Date.UTC(y, m - 1, d)); };
const addDays = (s, n) => { const d = parseYmd(s); d.setUTCDate(d.getUTCDate() + n); return ymd(d); };
const daysBetween = (a, b) => Math.round((parseYmd(b) - parseYmd(a)) / 86400000);
const isYmd = (s) => /^\d{4}-\d{2}-\d{2}$/.test(s || "") && !isNaN(parseYmd(s));
function today() {
  const p = Object.fromEntries(new Intl.DateTimeFormat("en-US", { timeZone: S.tz, year: "numeric", month: "2-digit", day: "2-digit" })
    .formatToParts(new Date()).map((x) => [x.type, x.value]));
  return `${p.year}-${p.month}-${p.day}`;
}
const fyOf = (s) => { const [y, m] = s.split("-").map(Number); return m >= 4 ? y : y - 1; };
const fyStart = (fy) => `${fy}-04-01`;
const fyEnd = (fy) => `${fy + 1}-03-31`;
const jaDate = (s) => { const [y, m, d] = s.split("-").map(Number); return `${y}年${m}月${d}日`; };
const shortDate = (s) => { const [, m, d] = s.split("-").map(Number); return `${m}/${d}`; };

function quickRange(kind) {
  const t = today();
  const firstThis = t.slice(0, 8) + "01";
  const fy = fyOf(t);
  switch (kind) {
    case "month": return [firstThis, t];
    case "last-month": { const end = addDays(firstThis, -1); return [end.slice(0, 8) + "01", end]; }
    case "fy": return [fyStart(fy), t];
    case "last-fy": return [fyStart(fy - 1), fyEnd(fy - 1)];
  }
  return [fyStart(fy), t];
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------
const min1 = (s) => (s == null ? "—" : (s / 60).toFixed(1));
const int = (n) => (n == null ? "—" : Math.round(n).toLocaleString("ja-JP"));
const pct1 = (p) => (p == null ? "—" : p.toFixed(1));
const nameBoth = (n) => `${n?.ja ?? ""} / ${n?.en ?? ""}`;
const WEEKDAY = { mon: ["月", "Mon"], tue: ["火", "Tue"], wed: ["水", "Wed"], thu: ["木", "Thu"], fri: ["金", "Fri"], sat: ["土", "Sat"], sun: ["日", "Sun"] };
const STATUS_TEXT = {
  ok: "目標達成 On target", warn: "目標に近い Near target", alert: "目標未達 Off target", none: "目標なし No target",
  pace_ok: "順調 On pace", pace_warn: "やや遅れ Slightly behind", pace_alert: "遅れ Behind",
};

function setStatus(card, pill, status, text) {
  $(card).dataset.status = status;
  const p = $(pill);
  p.className = `pill ${status === "none" ? "" : status}`;
  p.textContent = text || STATUS_TEXT[status];
}

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------
function kpi(site, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v) q.set(k, v);
  return api("GET", `/api/v1/sites/${encodeURIComponent(site)}/kpi?${q}`, { token: token() });
}
/** Supplementary figures: a refusal or an error leaves them out instead of stopping the page. */
const soft = (p) => p.catch((e) => { if (e instanceof ApiError && e.status === 0) throw e; return null; });

/** Life events that carry a stay-time target in a fiscal year (one tiny request each, cached). */
async function stayTargets(fy) {
  if (S.targets.has(fy)) return S.targets.get(fy);
  const day = fyStart(fy);
  const events = S.catalog?.life_events || [];
  const found = await Promise.all(events.map(async (le) => {
    try {
      const r = await kpi(SITE, { from: day, to: day, life_event: le.id });
      return r?.stay_s?.target_mean != null ? { id: le.id, name: le.name, target_mean: r.stay_s.target_mean } : null;
    } catch (e) {
      if (e instanceof ApiError && [0, 401, 403].includes(e.status)) throw e;
      return null;
    }
  }));
  const list = found.filter(Boolean);
  S.targets.set(fy, list);
  return list;
}

// ---------------------------------------------------------------------------------------------
// Start: token, catalog, defaults, first load
// ---------------------------------------------------------------------------------------------
async function start() {
  clearMessage();
  try {
    if (!S.catalog) {
      const sites = await api("GET", "/api/v1/sites");
      S.sites = sites?.sites || [];
      const catalogSite = ALL ? S.sites[0]?.id : SITE;
      if (!catalogSite) throw new ApiError(404, "no_sites", "拠点がありません / no sites are configured");
      S.catalog = await loadCatalog(catalogSite);
      S.tz = S.catalog?.site?.timezone || "Asia/Tokyo";
      renderHeader();
      fillSelects();
      const [df, dt] = quickRange("fy");
      $("from").value = df;
      $("to").value = dt;
    }
    if (!token()) { askToken(); return; }
    document.body.dataset.loading = "1";
    if (!S.started) {
      const q = new URLSearchParams(location.search);
      const [df, dt] = quickRange("fy");
      S.from = isYmd(q.get("from")) ? q.get("from") : df;
      S.to = isYmd(q.get("to")) ? q.get("to") : dt;
      S.procedure = q.get("procedure") || "";
      if (q.has("life_event")) {
        S.lifeEvent = q.get("life_event") || "";
      } else {
        // By default show the population the stay-time target is set for (e.g. moving in, at chuo).
        const withTarget = await stayTargets(fyOf(S.from));
        S.lifeEvent = withTarget[0]?.id || "";
      }
      S.started = true;
      syncControls();
    }
    await load();
  } catch (e) {
    document.body.dataset.loading = "0";
    showError(e);
  }
}

function renderHeader() {
  const site = ALL ? null : S.sites.find((s) => s.id === SITE) || S.catalog?.site;
  $("site-name").innerHTML = ALL
    ? `全拠点（市全体） <span class="en">All sites (city-wide)</span> · ${S.sites.length} 拠点 <span class="en">sites</span>`
    : `${esc(site?.name?.ja ?? SITE)} <span class="en">${esc(site?.name?.en ?? "")}</span>`;
  document.title = `業務指標 ${ALL ? "市全体" : site?.name?.ja ?? SITE} / KPI — madoguchi`;
}

function fillSelects() {
  const le = $("life-event"), pr = $("procedure");
  le.innerHTML = `<option value="">すべて / All</option>` + (S.catalog.life_events || [])
    .map((l) => `<option value="${esc(l.id)}">${esc(nameBoth(l.name))}</option>`).join("");
  pr.innerHTML = `<option value="">すべて / All</option>` + (S.catalog.procedures || [])
    .map((p) => `<option value="${esc(p.code)}">${esc(nameBoth(p.name))}</option>`).join("");
}

function syncControls() {
  $("from").value = S.from;
  $("to").value = S.to;
  if (S.lifeEvent && ![...$("life-event").options].some((o) => o.value === S.lifeEvent)) {
    $("life-event").insertAdjacentHTML("beforeend", `<option value="${esc(S.lifeEvent)}">${esc(S.lifeEvent)}</option>`);
  }
  if (S.procedure && ![...$("procedure").options].some((o) => o.value === S.procedure)) {
    $("procedure").insertAdjacentHTML("beforeend", `<option value="${esc(S.procedure)}">${esc(S.procedure)}</option>`);
  }
  $("life-event").value = S.lifeEvent;
  $("procedure").value = S.procedure;
  for (const b of document.querySelectorAll("#quick button")) {
    const [f, t] = quickRange(b.dataset.range);
    b.classList.toggle("on", f === S.from && t === S.to);
  }
  const q = new URLSearchParams({ from: S.from, to: S.to, life_event: S.lifeEvent });
  if (S.procedure) q.set("procedure", S.procedure);
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------
async function load() {
  const seq = ++S.seq;
  document.body.dataset.loading = "1";
  const t = today();
  const fy = fyOf(S.from);
  const fyFrom = fyStart(fy);
  const fyTo = t < fyFrom ? fyFrom : (t < fyEnd(fy) ? t : fyEnd(fy));
  const filter = { from: S.from, to: S.to, life_event: S.lifeEvent, procedure: S.procedure };
  const filtered = !!(S.lifeEvent || S.procedure);
  try {
    const [day, hour, weekday, fySite, fyAll, rangeAll, targets, hooks] = await Promise.all([
      kpi(SITE, { ...filter, group_by: "day" }),
      kpi(SITE, { ...filter, group_by: "hour" }),
      kpi(SITE, { ...filter, group_by: "weekday" }),
      kpi(SITE, { from: fyFrom, to: fyTo }),
      ALL ? null : soft(kpi("all", { from: fyFrom, to: fyTo })),
      ALL && !filtered ? null : soft(kpi("all", { from: S.from, to: S.to })),
      stayTargets(fy).catch(() => []),
      !ALL && S.hooks === null ? siteHooks() : undefined,
    ]);
    if (seq !== S.seq) return;
    if (hooks !== undefined) S.hooks = hooks;
    S.data = { day, hour, weekday, fySite, fyAll, rangeAll, targets, fy, fyFrom, fyTo, today: t };
    clearMessage();
    document.body.dataset.stale = "0";
    render();
    const now = new Intl.DateTimeFormat("ja-JP", { timeZone: S.tz, hour: "2-digit", minute: "2-digit" }).format(new Date());
    $("updated").textContent = `更新 ${now}`;
    document.body.dataset.loading = "0";
    document.body.dataset.loaded = "1";
  } catch (e) {
    if (seq !== S.seq) return;
    document.body.dataset.loading = "0";
    if (S.data) document.body.dataset.stale = "1";
    showError(e);
  }
}

// ---------------------------------------------------------------------------------------------
// Render
// ---------------------------------------------------------------------------------------------
function scopeText() {
  const site = ALL ? "市全体" : (S.catalog?.site?.name?.ja ?? SITE);
  const le = S.lifeEvent ? (S.catalog?.life_events || []).find((l) => l.id === S.lifeEvent)?.name?.ja ?? S.lifeEvent : "全来庁者";
  const pr = S.procedure ? `・${(S.catalog?.procedures || []).find((p) => p.code === S.procedure)?.name?.ja ?? S.procedure}` : "";
  return `${site}・${le}${pr}・${shortDate(S.from)}〜${shortDate(S.to)}`;
}

function render() {
  const D = S.data;
  const M = D.day;
  $("fy-badge").textContent = `${D.fy}年度 FY${D.fy}`;
  renderStayCard(M, D);
  const usage = usageOf(D);
  renderVisitsCard(usage, D);
  const sat = satisfactionOf(D);
  renderSatCard(sat);
  renderMini(M);
  renderReservations(M.reservations);
  renderHandover(M, D.fySite);
  renderHint(D);
  drawAll();
}

function drawAll() {
  const D = S.data;
  if (!D) return;
  const target = D.day.stay_s.target_mean ?? null;
  drawUsage($("chart-usage"), usageOf(D));
  drawSatisfaction($("chart-satisfaction"), satisfactionOf(D));
  drawTrend($("chart-trend"), D.day.groups || [], target, trendHeight());
  drawDistribution($("chart-distribution"), D.day, D.weekday.groups || [], target);
  drawHours($("chart-hours"), D.hour.groups || []);
}

function renderStayCard(M, D) {
  const mean = M.stay_s.mean, target = M.stay_s.target_mean;
  $("stay-mean").textContent = mean == null ? "—" : (mean / 60).toFixed(1);
  $("stay-target").textContent = target == null ? "—" : (target / 60).toFixed(1);
  $("stay-scope").textContent = scopeText();
  $("stay-scope").title = scopeText();
  let status = "none", delta = "";
  if (target != null && mean != null) {
    const diff = (mean - target) / 60;
    status = mean <= target ? "ok" : mean <= target * 1.1 ? "warn" : "alert";
    delta = diff <= 0
      ? `目標より ${Math.abs(diff).toFixed(1)} 分短い <span class="en">${Math.abs(diff).toFixed(1)} min below target</span>`
      : `目標より ${diff.toFixed(1)} 分長い <span class="en">${diff.toFixed(1)} min above target</span>`;
  } else if (target == null) {
    const t = D.targets[0];
    delta = t
      ? `目標（${f1(t.target_mean / 60)}分）は「${esc(t.name.ja)}」に設定 <span class="en">Target set for ${esc(t.name.en)}</span> — <button type="button" class="linkish" data-show-le="${esc(t.id)}">表示 <span class="en">Show</span></button>`
      : `この条件の目標は設定されていません <span class="en">No target for this selection</span>`;
  } else {
    delta = `完了した来庁がありません <span class="en">No completed visits</span>`;
  }
  setStatus("card-stay", "stay-status", status, target != null && mean == null ? "データなし No data" : null);
  $("stay-delta").innerHTML = delta;
}

/** Visits in the fiscal year so far against the yearly target, with its scope (the site or the city). */
function usageOf(D) {
  const days = daysBetween(fyStart(D.fy), fyEnd(D.fy)) + 1;
  const elapsed = Math.max(0, Math.min(days, daysBetween(fyStart(D.fy), D.today) + 1));
  const base = { fy: D.fy, days, elapsed, frac: elapsed / days, to: D.fyTo };
  if (D.fySite.visits_target != null) return { ...base, scope: ALL ? "city" : "site", visits: D.fySite.visits, target: D.fySite.visits_target };
  if (D.fyAll?.visits_target != null) return { ...base, scope: "city", visits: D.fyAll.visits, siteVisits: D.fySite.visits, target: D.fyAll.visits_target };
  return { ...base, scope: ALL ? "city" : "site", visits: D.fySite.visits, target: null };
}

function renderVisitsCard(u, D) {
  $("visits-value").textContent = int(u.visits);
  $("visits-target").textContent = int(u.target);
  const scope = u.scope === "city" ? "市全体" : (S.catalog?.site?.name?.ja ?? SITE);
  const upto = D.today > fyEnd(D.fy) ? "年度計" : `${shortDate(u.to)}まで`;
  $("visits-scope").textContent = `${scope}・${D.fy}年度 ${upto}・全来庁者（完了）`;
  let status = "none", delta = "";
  if (u.target) {
    const expected = u.target * u.frac;
    const pace = expected > 0 ? u.visits / expected : 1;
    status = pace >= 1 ? "ok" : pace >= 0.9 ? "warn" : "alert";
    delta = `達成率 ${(100 * u.visits / u.target).toFixed(1)}% ・ 按分見込み ${int(expected)} 件の ${(pace * 100).toFixed(0)}% <span class="en">of pro-rated</span>`;
    if (u.siteVisits != null) delta += `<br>うち${esc(S.catalog?.site?.name?.ja ?? SITE)} ${int(u.siteVisits)} 件 <span class="en">this site</span>`;
  } else {
    delta = `この年度の件数目標は設定されていません <span class="en">No visits target for FY${u.fy}</span>`;
  }
  setStatus("card-visits", "visits-status", status, status === "none" ? null : STATUS_TEXT[`pace_${status}`]);
  $("visits-delta").innerHTML = delta;
}

/** Satisfaction of the selection, and the target with its scope (the selection's own, else the site's or the city's). */
function satisfactionOf(D) {
  const M = D.day.satisfaction;
  let target = M.target_pct ?? null, targetScope = "selection";
  if (target == null && D.fySite.satisfaction.target_pct != null) { target = D.fySite.satisfaction.target_pct; targetScope = ALL ? "city" : "site"; }
  if (target == null && D.fyAll?.satisfaction?.target_pct != null) { target = D.fyAll.satisfaction.target_pct; targetScope = "city"; }
  const rows = [{ label: ["この条件", "This selection"], s: M }];
  const filtered = !!(S.lifeEvent || S.procedure);
  if (D.rangeAll && (!ALL || filtered)) rows.push({ label: ["市全体・全来庁者", "City-wide, all visits"], s: D.rangeAll.satisfaction });
  return { share: M.share_pct, answers: M.answers, top: M.top_two, target, targetScope, rows };
}

function renderSatCard(sat) {
  $("sat-value").textContent = pct1(sat.share);
  $("sat-target").textContent = sat.target == null ? "—" : String(sat.target);
  $("sat-scope").textContent = `${scopeText()}・回答 ${int(sat.answers)} 件`;
  $("sat-scope").title = $("sat-scope").textContent;
  let status = "none", delta = "";
  if (sat.target != null && sat.share != null) {
    const diff = sat.share - sat.target;
    status = diff >= 0 ? "ok" : diff >= -3 ? "warn" : "alert";
    delta = `目標との差 ${diff >= 0 ? "+" : "−"}${Math.abs(diff).toFixed(1)} ポイント <span class="en">${diff >= 0 ? "+" : "−"}${Math.abs(diff).toFixed(1)} pt vs target</span>`;
  } else if (sat.share == null) {
    delta = `回答がありません <span class="en">No answers in this period</span>`;
  } else {
    delta = `目標は設定されていません <span class="en">No target</span>`;
  }
  const pillText = sat.share == null && sat.target != null ? "回答なし No answers" : null;
  if (sat.target != null && sat.targetScope === "city" && (!ALL || S.lifeEvent || S.procedure)) {
    delta += `<br>目標は市全体・全来庁者の値 <span class="en">target is city-wide, all visits</span>`;
  }
  setStatus("card-sat", "sat-status", status, pillText);
  $("sat-delta").innerHTML = delta;
}

function renderMini(M) {
  const ended = M.visits + M.no_show + M.cancelled;
  const rate = (n) => (ended ? `${(100 * n / ended).toFixed(1)}%` : "—");
  $("mini").innerHTML = `
    <div><span class="k">完了 <span class="en">Completed</span></span><span class="v num">${int(M.visits)}</span></div>
    <div><span class="k">不在・取消 <span class="en">No-show · cancelled</span></span><span class="v num">${int(M.no_show)} · ${int(M.cancelled)} <small>${rate(M.no_show + M.cancelled)}</small></span></div>
    <div><span class="k">平均待ち時間 <span class="en">Mean wait</span></span><span class="v num">${min1(M.wait_s.mean)} <small>分 min</small></span></div>
    <div><span class="k">平均対応時間 <span class="en">Mean service</span></span><span class="v num">${min1(M.service_s.mean)} <small>分 min</small></span></div>
    <div><span class="k">滞在 p90 <span class="en">Stay p90</span></span><span class="v num">${min1(M.stay_s.p90)} <small>分 min</small></span></div>
    <div><span class="k">滞在 最大 <span class="en">Stay max</span></span><span class="v num">${min1(M.stay_s.max)} <small>分 min</small></span></div>`;
}

/**
 * Bookings whose slot starts in the period (the KPI reply's `reservations`; the filters do not
 * apply to it): booked, checked in (late among them), no-shows and their rate among the bookings
 * whose outcome is known. Hidden for a reply without it; a line saying so when there are none.
 */
function renderReservations(r) {
  $("reservations").hidden = !r;
  if (!r) return;
  const booked = Number(r.booked) || 0, checkedIn = Number(r.checked_in) || 0;
  const late = Number(r.late) || 0, noShow = Number(r.no_show) || 0;
  const none = booked === 0 && checkedIn === 0 && noShow === 0;
  $("res-none").hidden = !none;
  $("res-figs").hidden = none;
  $("res-scope").textContent = `${ALL ? "市全体" : (S.catalog?.site?.name?.ja ?? SITE)}・${shortDate(S.from)}〜${shortDate(S.to)}`;
  const known = checkedIn + noShow;
  $("res-booked").textContent = int(booked);
  $("res-checked-in").textContent = int(checkedIn);
  $("res-late").textContent = int(late);
  $("res-no-show").textContent = int(noShow);
  $("res-rate").textContent = known ? `${pct1((100 * noShow) / known)}%` : "—";
  $("res-upcoming").textContent = int(Math.max(0, booked - known));
  $("reservations").dataset.booked = String(booked);
}

/**
 * Completed visits whose `visit.completed` webhook reached the counter-support system (the KPI
 * reply's `handed_over`, with the page's filters) and their share of the completed visits; the
 * fiscal year's so far beside them. Hidden for a reply without it; a line saying so at a site
 * where no subscriber is sent completed visits.
 */
function renderHandover(M, fy) {
  const has = typeof M?.handed_over === "number";
  $("handover").hidden = !has;
  if (!has) return;
  const share = (h, v) => (v ? `${pct1((100 * h) / v)}%` : "—");
  const handed = M.handed_over, visits = Number(M.visits) || 0;
  // Only a subscriber sent visit.completed can hand a visit over.
  const unconnected = Array.isArray(S.hooks) && !S.hooks.some((h) => (h.events || []).includes("visit.completed"));
  $("handover-none").hidden = !unconnected;
  $("handover-figs").hidden = unconnected && handed === 0;
  $("handover-scope").textContent = scopeText();
  $("handover-value").textContent = int(handed);
  $("handover-visits").textContent = int(visits);
  $("handover-share").textContent = share(handed, visits);
  $("handover-missing").textContent = int(Math.max(0, visits - handed));
  const fyHanded = typeof fy?.handed_over === "number" ? fy.handed_over : null;
  $("handover-fy").textContent = int(fyHanded);
  $("handover-fy-sub").innerHTML = fyHanded == null ? ""
    : `完了 ${int(fy.visits)} 件の ${share(fyHanded, Number(fy.visits) || 0)}・全来庁者 <span class="en">of ${int(fy.visits)} completed, all visits</span>`;
  $("handover").dataset.handedOver = String(handed);
  $("handover").dataset.visits = String(visits);
}

/** The site's webhook subscribers, to tell "none connected" from "none handed over"; null when not known. */
async function siteHooks() {
  try {
    const r = await api("GET", `/api/v1/sites/${SITE_Q}/webhooks`, { token: token() });
    return Array.isArray(r?.hooks) ? r.hooks : null;
  } catch {
    return null;
  }
}

function renderHint(D) {
  // ★ marks the life events with a stay-time target in this fiscal year.
  const t = D.targets;
  $("life-event").title = t.length
    ? `★ 滞在時間の目標あり / has a stay-time target: ${t.map((x) => `${x.name.ja} ${f1(x.target_mean / 60)}分`).join("、")}`
    : "";
  for (const o of $("life-event").options) {
    const marked = t.some((x) => x.id === o.value);
    o.textContent = o.textContent.replace(/^★ /, "");
    if (marked) o.textContent = `★ ${o.textContent}`;
  }
}

// ---------------------------------------------------------------------------------------------
// Charts (inline SVG, no libraries)
// ---------------------------------------------------------------------------------------------
/** A round axis maximum and its ticks. */
function niceScale(max, count = 5) {
  if (!(max > 0)) max = 1;
  const raw = max / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || 10 * mag;
  const top = Math.ceil(max / step - 1e-9) * step;
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(+v.toFixed(6));
  return { top, ticks };
}
const tip = (lines) => `data-tip="${esc(lines.join("\n"))}"`;
const f1 = (v) => (v == null ? "—" : v.toFixed(1));
const widthOf = (svg) => Math.max(260, Math.floor(svg.parentElement.clientWidth - 2 * 16));

function frame(svg, W, H) {
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("width", W);
  svg.setAttribute("height", H);
}
function empty(svg, W, H, text = "この条件のデータはありません / No data for this selection") {
  frame(svg, W, H);
  svg.innerHTML = `<rect x="0" y="0" width="${W}" height="${H}" fill="#fafbfc" stroke="#e6eaf0" rx="6"/>
    <text class="empty" x="${W / 2}" y="${H / 2}" text-anchor="middle" dominant-baseline="middle">${esc(text)}</text>`;
}

/** The trend fills the height of the column beside it (usage and satisfaction). */
function trendHeight() {
  const svg = $("chart-trend"), panel = svg.closest(".panel"), stack = $("chart-usage").closest(".stack");
  const kids = [...stack.children];
  const column = kids[kids.length - 1].getBoundingClientRect().bottom - kids[0].getBoundingClientRect().top;
  const chrome = svg.getBoundingClientRect().top - panel.getBoundingClientRect().top + 14;
  return Math.max(240, Math.min(520, Math.floor(column - chrome)));
}

/** (a) Mean stay per day, a weighted 20-business-day moving mean, and the target, in minutes. */
function drawTrend(svg, groups, target, H = 268) {
  const W = widthOf(svg);
  const pts = groups.filter((g) => g.stay_s.mean != null)
    .map((g) => ({ key: g.key, t: parseYmd(g.key).getTime(), v: g.stay_s.mean / 60, n: g.visits, p90: g.stay_s.p90 / 60 }));
  if (!pts.length) return empty(svg, W, H);
  const m = { l: 44, r: 78, t: 22, b: 30 };
  const iw = W - m.l - m.r, ih = H - m.t - m.b;
  let t0 = parseYmd(S.from).getTime(), t1 = parseYmd(S.to).getTime();
  t0 = Math.min(t0, pts[0].t); t1 = Math.max(t1, pts[pts.length - 1].t);
  if (t1 - t0 < 86400000) { t0 -= 43200000; t1 += 43200000; }
  const tgt = target == null ? null : target / 60;
  const { top, ticks } = niceScale(Math.max(1, ...pts.map((p) => p.v), tgt ?? 0) * 1.08);
  const x = (t) => m.l + ((t - t0) / (t1 - t0)) * iw;
  const y = (v) => m.t + ih - (v / top) * ih;
  let out = `<g class="grid">${ticks.map((v) => `<line x1="${m.l}" x2="${m.l + iw}" y1="${y(v)}" y2="${y(v)}"/>`).join("")}</g>`;
  out += ticks.map((v) => `<text class="axis-label" x="${m.l - 6}" y="${y(v)}" text-anchor="end" dominant-baseline="middle">${v}</text>`).join("");
  out += `<text class="axis-label" x="${m.l - 24}" y="${m.t - 12}" text-anchor="start">分 min</text>`;
  // x ticks: months for long ranges, days otherwise
  const spanDays = (t1 - t0) / 86400000;
  const xt = [];
  if (spanDays > 62) {
    const d = new Date(t0); d.setUTCDate(1); d.setUTCMonth(d.getUTCMonth() + (new Date(t0).getUTCDate() > 1 ? 1 : 0));
    for (; d.getTime() <= t1; d.setUTCMonth(d.getUTCMonth() + 1)) {
      const mo = d.getUTCMonth() + 1;
      xt.push([d.getTime(), mo === 1 || xt.length === 0 ? `${d.getUTCFullYear()}/${mo}` : `${mo}月`]);
    }
  } else {
    const step = spanDays > 31 ? 7 : spanDays > 14 ? 3 : 1;
    for (let t = t0 + (spanDays < 1 ? 43200000 : 0); t <= t1; t += step * 86400000) xt.push([t, shortDate(ymd(new Date(t)))]);
  }
  out += xt.map(([t, l]) => `<line x1="${x(t)}" x2="${x(t)}" y1="${m.t + ih}" y2="${m.t + ih + 4}" stroke="#9aa6b4"/>
    <text class="axis-label" x="${x(t)}" y="${m.t + ih + 16}" text-anchor="middle">${esc(l)}</text>`).join("");
  out += `<line x1="${m.l}" x2="${m.l + iw}" y1="${m.t + ih}" y2="${m.t + ih}" stroke="#9aa6b4"/>`;
  // daily means, broken over gaps longer than a week
  const path = (vals) => vals.map((p, i) => `${i && p.t - vals[i - 1].t <= 7 * 86400000 ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join("");
  out += `<path d="${path(pts)}" fill="none" stroke="var(--bar-2)" stroke-width="1.4" stroke-linejoin="round"/>`;
  if (pts.length <= 62) out += pts.map((p) => `<circle cx="${x(p.t)}" cy="${y(p.v)}" r="${pts.length <= 5 ? 4.5 : 2.6}" fill="${pts.length <= 5 ? "var(--bar)" : "var(--bar-2)"}"/>`).join("");
  // moving mean over the last 20 days with visits, weighted by visits (the mean of those stays)
  if (pts.length >= 10) {
    const ma = pts.map((p, i) => {
      const w = pts.slice(Math.max(0, i - 19), i + 1);
      const n = w.reduce((a, q) => a + q.n, 0);
      return { t: p.t, v: w.reduce((a, q) => a + q.v * q.n, 0) / n };
    });
    out += `<path d="${path(ma)}" fill="none" stroke="var(--bar)" stroke-width="2.6" stroke-linejoin="round" stroke-linecap="round"/>`;
    const last = ma[ma.length - 1];
    out += `<text x="${x(last.t) + 6}" y="${y(last.v)}" dominant-baseline="middle" style="fill:var(--bar);font-weight:700">${f1(last.v)}</text>`;
  }
  if (tgt != null) {
    out += `<line x1="${m.l}" x2="${m.l + iw}" y1="${y(tgt)}" y2="${y(tgt)}" stroke="var(--target)" stroke-width="1.6" stroke-dasharray="6 4"/>
      <text class="target-label" x="${m.l + iw + 6}" y="${y(tgt) - 6}">目標 ${f1(tgt)}</text>
      <text class="axis-label" x="${m.l + iw + 6}" y="${y(tgt) + 8}">Target min</text>`;
  } else {
    out += `<text class="axis-label" x="${m.l + iw + 6}" y="${m.t + 10}">目標なし</text><text class="axis-label" x="${m.l + iw + 6}" y="${m.t + 23}">No target</text>`;
  }
  // hover targets: one band per point
  out += pts.map((p, i) => {
    const a = i ? (x(pts[i - 1].t) + x(p.t)) / 2 : m.l;
    const b = i < pts.length - 1 ? (x(p.t) + x(pts[i + 1].t)) / 2 : m.l + iw;
    return `<rect x="${a}" y="${m.t}" width="${Math.max(1, b - a)}" height="${ih}" fill="transparent" ${tip([
      `${jaDate(p.key)}`, `平均滞在 Mean stay: ${f1(p.v)} 分`, `p90: ${f1(p.p90)} 分`, `完了 Visits: ${int(p.n)}`,
      ...(tgt != null ? [`目標 Target: ${f1(tgt)} 分`] : [])])}/>`;
  }).join("");
  frame(svg, W, H);
  svg.innerHTML = out;
}

/** (b) Per-visit stay percentiles (p50–p90 box, p95 whisker, mean, max) for the whole range and per weekday. */
function drawDistribution(svg, M, groups, target) {
  const W = widthOf(svg);
  const rows = [{ label: ["全体", "All"], f: M }, ...groups.map((g) => ({ label: WEEKDAY[g.key] || [g.key, g.key], f: g }))]
    .filter((r) => r.f.stay_s.mean != null);
  if (!rows.length) return empty(svg, W, 220);
  const rowH = 30, m = { l: 74, r: 92, t: 22, b: 26 };
  const H = m.t + rows.length * rowH + m.b;
  const iw = W - m.l - m.r;
  const tgt = target == null ? null : target / 60;
  const mx = Math.max(...rows.map((r) => r.f.stay_s.p95 / 60), ...rows.map((r) => r.f.stay_s.mean / 60), tgt ?? 0);
  const { top, ticks } = niceScale(Math.max(1, mx) * 1.05, 6);
  const x = (v) => m.l + Math.min(1, v / top) * iw;
  let out = `<g class="grid">${ticks.map((v) => `<line x1="${x(v)}" x2="${x(v)}" y1="${m.t - 4}" y2="${H - m.b}"/>`).join("")}</g>`;
  out += ticks.map((v) => `<text class="axis-label" x="${x(v)}" y="${H - m.b + 14}" text-anchor="middle">${v}</text>`).join("");
  out += `<text class="axis-label" x="${m.l + iw}" y="${H - 1}" text-anchor="end">分 min</text>`;
  out += `<text class="axis-label" x="${W - 4}" y="${m.t - 8}" text-anchor="end">最大 Max · 件数 n</text>`;
  rows.forEach((r, i) => {
    const s = r.f.stay_s, cy = m.t + i * rowH + rowH / 2;
    const p50 = s.p50 / 60, p90 = s.p90 / 60, p95 = s.p95 / 60, mean = s.mean / 60, max = s.max / 60;
    const bold = i === 0 ? "font-weight:700;fill:var(--ink)" : "";
    if (i === 1) out += `<line x1="8" x2="${W - 4}" y1="${cy - rowH / 2}" y2="${cy - rowH / 2}" stroke="#e6eaf0"/>`;
    out += `<text x="8" y="${cy}" dominant-baseline="middle" style="${bold}">${esc(r.label[0])} <tspan class="axis-label">${esc(r.label[1])}</tspan></text>`;
    out += `<line x1="${x(0)}" x2="${x(p50)}" y1="${cy}" y2="${cy}" stroke="#c5cfdb" stroke-width="2"/>`;
    out += `<rect x="${x(p50)}" y="${cy - 8}" width="${Math.max(1.5, x(p90) - x(p50))}" height="16" fill="var(--bar-3)" stroke="var(--bar)" rx="2"/>`;
    out += `<line x1="${x(p50)}" x2="${x(p50)}" y1="${cy - 8}" y2="${cy + 8}" stroke="var(--bar)" stroke-width="2.5"/>`;
    out += `<line x1="${x(p90)}" x2="${x(p95)}" y1="${cy}" y2="${cy}" stroke="var(--bar)" stroke-width="2"/>
      <line x1="${x(p95)}" x2="${x(p95)}" y1="${cy - 5}" y2="${cy + 5}" stroke="var(--bar)" stroke-width="2"/>`;
    const mxp = x(mean);
    out += `<path d="M${mxp},${cy - 6}L${mxp + 6},${cy}L${mxp},${cy + 6}L${mxp - 6},${cy}Z" fill="var(--ink)" stroke="#fff" stroke-width="1"/>`;
    out += `<text x="${W - 4}" y="${cy}" text-anchor="end" dominant-baseline="middle" class="num">${f1(max)}<tspan class="axis-label"> · ${int(r.f.visits)}</tspan></text>`;
    out += `<rect x="0" y="${cy - rowH / 2}" width="${W}" height="${rowH}" fill="transparent" ${tip([
      `${r.label[0]} ${r.label[1]} — 完了 ${int(r.f.visits)} 件`,
      `平均 Mean ${f1(mean)} 分`, `中央値 p50 ${f1(p50)} 分`, `p90 ${f1(p90)} 分`, `p95 ${f1(p95)} 分`, `最大 Max ${f1(max)} 分`])}/>`;
  });
  if (tgt != null) {
    out += `<line x1="${x(tgt)}" x2="${x(tgt)}" y1="${m.t - 6}" y2="${H - m.b}" stroke="var(--target)" stroke-width="1.6" stroke-dasharray="6 4"/>
      <text class="target-label" x="${x(tgt)}" y="${m.t - 10}" text-anchor="middle">目標 ${f1(tgt)}</text>`;
  }
  frame(svg, W, H);
  svg.innerHTML = out;
}

/** (c) Mean and p90 wait per hour of arrival, the worst hour (highest mean) highlighted. */
function drawHours(svg, groups) {
  const W = widthOf(svg), H = 236;
  const by = new Map(groups.filter((g) => g.wait_s.mean != null).map((g) => [Number(g.key), g]));
  const worstBox = $("hours-worst");
  if (!by.size) { worstBox.hidden = true; return empty(svg, W, H); }
  const hours = [...by.keys()];
  const h0 = Math.min(...hours), h1 = Math.max(...hours);
  const all = [];
  for (let h = h0; h <= h1; h++) all.push(h);
  let worst = null;
  for (const [h, g] of by) if (!worst || g.wait_s.mean > worst[1].wait_s.mean) worst = [h, g];
  const m = { l: 40, r: 10, t: 20, b: 34 };
  const iw = W - m.l - m.r, ih = H - m.t - m.b;
  const { top, ticks } = niceScale(Math.max(1, ...[...by.values()].map((g) => g.wait_s.p90 / 60)) * 1.08);
  const y = (v) => m.t + ih - (v / top) * ih;
  const slot = iw / all.length, bw = Math.min(22, slot * 0.34);
  let out = `<g class="grid">${ticks.map((v) => `<line x1="${m.l}" x2="${m.l + iw}" y1="${y(v)}" y2="${y(v)}"/>`).join("")}</g>`;
  out += ticks.map((v) => `<text class="axis-label" x="${m.l - 6}" y="${y(v)}" text-anchor="end" dominant-baseline="middle">${v}</text>`).join("");
  out += `<text class="axis-label" x="${m.l - 6}" y="${m.t - 8}" text-anchor="end">分</text>`;
  all.forEach((h, i) => {
    const cx = m.l + slot * i + slot / 2;
    const g = by.get(h);
    out += `<text class="axis-label" x="${cx}" y="${m.t + ih + 14}" text-anchor="middle">${h}時</text>`;
    if (!g) return;
    const hot = worst && h === worst[0];
    const mean = g.wait_s.mean / 60, p90 = g.wait_s.p90 / 60;
    if (slot >= 46) out += `<text class="axis-label" x="${cx}" y="${m.t + ih + 27}" text-anchor="middle">n=${int(g.visits)}</text>`;
    out += `<rect x="${cx - bw - 1}" y="${y(mean)}" width="${bw}" height="${Math.max(0.5, y(0) - y(mean))}" fill="${hot ? "var(--hot)" : "var(--bar)"}" rx="1.5"/>`;
    out += `<rect x="${cx + 1}" y="${y(p90)}" width="${bw}" height="${Math.max(0.5, y(0) - y(p90))}" fill="${hot ? "var(--hot-2)" : "var(--bar-2)"}" rx="1.5"/>`;
    if (hot) out += `<text x="${cx}" y="${y(p90) - 6}" text-anchor="middle" style="fill:var(--hot);font-weight:700">${f1(mean)} / ${f1(p90)}</text>`;
    out += `<rect x="${cx - slot / 2}" y="${m.t}" width="${slot}" height="${ih}" fill="transparent" ${tip([
      `${h}:00–${h}:59 に発券 (arrived)`, `平均待ち Mean wait: ${f1(mean)} 分`, `p90: ${f1(p90)} 分`, `最大 Max: ${f1(g.wait_s.max / 60)} 分`, `完了 Visits: ${int(g.visits)}`])}/>`;
  });
  out += `<line x1="${m.l}" x2="${m.l + iw}" y1="${y(0)}" y2="${y(0)}" stroke="#9aa6b4"/>`;
  frame(svg, W, H);
  svg.innerHTML = out;
  const [wh, wg] = worst;
  worstBox.hidden = false;
  worstBox.innerHTML = `最も待ち時間が長い時間帯 <span class="en">Worst hour</span>: <b>${wh}時台 (${wh}:00–${wh}:59)</b> — 平均 <b>${f1(wg.wait_s.mean / 60)}</b> 分 ・ p90 <b>${f1(wg.wait_s.p90 / 60)}</b> 分 <span class="en">mean / p90 min</span>（${int(wg.visits)} 件）`;
}

/** (d) Visits so far in the fiscal year against the yearly target, with the pro-rated expectation. */
function drawUsage(svg, u) {
  const W = widthOf(svg), H = 92;
  const sub = $("usage-sub"), kv = $("usage-kv");
  const scope = u.scope === "city" ? "市全体 City-wide" : `${S.catalog?.site?.name?.ja ?? SITE}`;
  sub.innerHTML = `${u.fy}年度（${u.fy}/4/1〜${u.fy + 1}/3/31）の完了件数 ・ ${esc(scope)} <span class="en">completed visits in FY${u.fy}</span>`;
  if (!u.target) {
    kv.innerHTML = `<span>実績 <span class="en">Actual</span> <b>${int(u.visits)}</b></span><span>経過 <span class="en">Elapsed</span> <b>${u.elapsed}/${u.days}</b> 日</span>`;
    return empty(svg, W, H, "件数目標は設定されていません / No visits target");
  }
  const m = { l: 4, r: 4, t: 28, b: 24 };
  const iw = W - m.l - m.r, bh = 24;
  const scaleMax = Math.max(u.target, u.visits);
  const x = (v) => m.l + (v / scaleMax) * iw;
  const expected = u.target * u.frac;
  let out = `<rect x="${m.l}" y="${m.t}" width="${iw}" height="${bh}" fill="#eef1f5" rx="4"/>`;
  if (u.siteVisits != null) {
    out += `<rect x="${m.l}" y="${m.t}" width="${Math.max(0, x(u.visits) - m.l)}" height="${bh}" fill="var(--bar-2)" rx="4" ${tip([`市全体 City-wide: ${int(u.visits)} 件`])}/>`;
    out += `<rect x="${m.l}" y="${m.t}" width="${Math.max(0, x(u.siteVisits) - m.l)}" height="${bh}" fill="var(--bar)" rx="4" ${tip([`${S.catalog?.site?.name?.ja ?? SITE}: ${int(u.siteVisits)} 件`])}/>`;
  } else {
    out += `<rect x="${m.l}" y="${m.t}" width="${Math.max(0, x(u.visits) - m.l)}" height="${bh}" fill="var(--bar)" rx="4" ${tip([`実績 Actual: ${int(u.visits)} 件`])}/>`;
  }
  const pct = (100 * u.visits) / u.target;
  const inside = x(u.visits) - m.l > 70;
  out += `<text x="${inside ? x(u.visits) - 6 : x(u.visits) + 6}" y="${m.t + bh / 2}" text-anchor="${inside ? "end" : "start"}" dominant-baseline="middle" style="fill:${inside ? "#fff" : "var(--ink)"};font-weight:700">${pct.toFixed(1)}%</text>`;
  const ex = x(expected);
  out += `<line x1="${ex}" x2="${ex}" y1="${m.t - 8}" y2="${m.t + bh + 4}" stroke="var(--target)" stroke-width="2" stroke-dasharray="4 3"/>`;
  const anchor = ex > W - 90 ? "end" : ex < 90 ? "start" : "middle";
  out += `<text class="target-label" x="${ex}" y="${m.t - 12}" text-anchor="${anchor}">按分見込み Pro-rated ${int(expected)}</text>`;
  const tx = x(u.target);
  const tAnchor = tx > W - 60 ? "end" : "middle";
  out += `<line x1="${tx}" x2="${tx}" y1="${m.t - 2}" y2="${m.t + bh + 5}" stroke="var(--target)" stroke-width="2"/>
    <text class="target-label" x="${tx}" y="${m.t + bh + 17}" text-anchor="${tAnchor}">目標 ${int(u.target)}</text>`;
  const labelLeft = tAnchor === "end" ? tx - 80 : tx - 40;
  for (const v of niceScale(scaleMax, 4).ticks) {
    const vx = x(v);
    if (v > scaleMax || (vx > labelLeft - 24 && vx < tx + 44)) continue;
    out += `<line x1="${vx}" x2="${vx}" y1="${m.t + bh}" y2="${m.t + bh + 4}" stroke="#9aa6b4"/>
      <text class="axis-label" x="${vx}" y="${m.t + bh + 16}" text-anchor="${v === 0 ? "start" : "middle"}">${int(v)}</text>`;
  }
  out += `<rect x="${ex - 6}" y="${m.t - 8}" width="12" height="${bh + 12}" fill="transparent" ${tip([`経過 ${u.elapsed}/${u.days} 日 (${(u.frac * 100).toFixed(1)}%)`, `按分見込み Pro-rated: ${int(expected)} 件`])}/>`;
  frame(svg, W, H);
  svg.innerHTML = out;
  kv.innerHTML = `<span>実績 <span class="en">Actual</span> <b>${int(u.visits)}</b></span>
    <span>目標 <span class="en">Target</span> <b>${int(u.target)}</b></span>
    <span>経過 <span class="en">Elapsed</span> <b>${u.elapsed}/${u.days}</b> 日 (${(u.frac * 100).toFixed(1)}%)</span>
    ${u.siteVisits != null ? `<span><i style="display:inline-block;width:.7rem;height:.7rem;background:var(--bar);border-radius:2px"></i> ${esc(S.catalog?.site?.name?.ja ?? SITE)} <b>${int(u.siteVisits)}</b></span>` : ""}`;
}

/** (e) Satisfaction share (top two of five) against the target. */
function drawSatisfaction(svg, sat) {
  const W = widthOf(svg);
  const rows = sat.rows.filter((r) => r.s);
  const m = { l: 116, r: 52, t: 18, b: 20 }, rowH = 28;
  const H = m.t + rows.length * rowH + m.b;
  const iw = W - m.l - m.r;
  const x = (p) => m.l + (p / 100) * iw;
  let out = `<g class="grid">${[0, 25, 50, 75, 100].map((p) => `<line x1="${x(p)}" x2="${x(p)}" y1="${m.t - 2}" y2="${H - m.b}"/>`).join("")}</g>`;
  out += [0, 25, 50, 75, 100].map((p) => `<text class="axis-label" x="${x(p)}" y="${H - m.b + 13}" text-anchor="middle">${p}%</text>`).join("");
  rows.forEach((r, i) => {
    const cy = m.t + i * rowH + rowH / 2;
    const share = r.s.share_pct;
    const color = sat.target == null || share == null ? "var(--bar)" : share >= sat.target ? "var(--ok)" : share >= sat.target - 3 ? "#d08a00" : "var(--alert)";
    out += `<text x="0" y="${cy - 5}" dominant-baseline="middle" style="${i === 0 ? "font-weight:700;fill:var(--ink)" : ""}">${esc(r.label[0])}</text>
      <text class="axis-label" x="0" y="${cy + 8}" dominant-baseline="middle">${esc(r.label[1])}</text>`;
    out += `<rect x="${x(0)}" y="${cy - 8}" width="${iw}" height="16" fill="#eef1f5" rx="3"/>`;
    if (share != null) out += `<rect x="${x(0)}" y="${cy - 8}" width="${x(share) - x(0)}" height="16" fill="${i === 0 ? color : "var(--bar-2)"}" rx="3"/>`;
    out += `<text x="${W - 2}" y="${cy}" text-anchor="end" dominant-baseline="middle" style="font-weight:700;fill:var(--ink)">${share == null ? "—" : `${share.toFixed(1)}%`}</text>`;
    out += `<rect x="0" y="${cy - rowH / 2}" width="${W}" height="${rowH}" fill="transparent" ${tip([
      `${r.label[0]} ${r.label[1]}`, `満足・やや満足 Top two: ${int(r.s.top_two)} / 回答 answers ${int(r.s.answers)}`, `割合 Share: ${share == null ? "—" : share.toFixed(1) + "%"}`])}/>`;
  });
  if (sat.target != null) {
    out += `<line x1="${x(sat.target)}" x2="${x(sat.target)}" y1="${m.t - 6}" y2="${H - m.b + 2}" stroke="var(--target)" stroke-width="1.8" stroke-dasharray="5 3"/>
      <text class="target-label" x="${x(sat.target)}" y="${m.t - 8}" text-anchor="middle">目標 ${sat.target}%</text>`;
  }
  frame(svg, W, H);
  svg.innerHTML = out;
  const cityWide = sat.targetScope === "city" || (ALL && !S.lifeEvent && !S.procedure);
  const scope = cityWide ? "市全体・全来庁者" : { selection: "この条件", site: "拠点・全来庁者" }[sat.targetScope];
  $("sat-kv").innerHTML = `<span>回答 <span class="en">Answers</span> <b>${int(sat.answers)}</b></span>
    <span>上位2つ <span class="en">Top two</span> <b>${int(sat.top)}</b></span>
    ${sat.target != null ? `<span>目標の対象 <span class="en">Target for</span> <b>${esc(scope)}</b></span>` : `<span>目標なし <span class="en">No target</span></span>`}`;
}

// ---------------------------------------------------------------------------------------------
// CSV: needs the bearer token, so fetch it and save through a Blob URL
// ---------------------------------------------------------------------------------------------
async function downloadCsv() {
  const btn = $("csv");
  if (!token()) { askToken(); return; }
  const q = new URLSearchParams({ from: S.from, to: S.to });
  btn.disabled = true;
  const label = btn.innerHTML;
  btn.innerHTML = `作成中… <span class="en">Preparing…</span>`;
  try {
    let res;
    try {
      res = await fetch(`/api/v1/sites/${SITE_Q}/visits.csv?${q}`, { headers: { Authorization: `Bearer ${token()}` } });
    } catch {
      throw new ApiError(0, "network", "サーバーに接続できません / cannot reach the server");
    }
    if (!res.ok) {
      const data = await res.json().catch(() => null);
      throw new ApiError(res.status, data?.error?.code || "error", data?.error?.message || res.statusText);
    }
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = document.createElement("a");
    a.href = url;
    a.download = `madoguchi-visits-${SITE}-${S.from}_${S.to}.csv`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    say("info", `CSVを保存しました（${(blob.size / 1024).toFixed(0)} KB、UTF-8 BOM付き、Excelで開けます）。 <span class="en">CSV saved (UTF-8 with BOM, opens in Excel). Life event and procedure filters do not apply to it.</span>`);
  } catch (e) {
    showError(e);
  } finally {
    btn.disabled = false;
    btn.innerHTML = label;
  }
}

// ---------------------------------------------------------------------------------------------
// Events
// ---------------------------------------------------------------------------------------------
let dateTimer = null;
function onDates() {
  clearTimeout(dateTimer);
  dateTimer = setTimeout(() => {
    const f = $("from").value, t = $("to").value;
    if (!isYmd(f) || !isYmd(t)) return;
    if (f > t) { say("error", "開始日は終了日以前にしてください。 <span class=\"en\">The start date must not be after the end date.</span>"); return; }
    S.from = f; S.to = t;
    syncControls();
    load();
  }, 350);
}
$("from").addEventListener("change", onDates);
$("to").addEventListener("change", onDates);
$("quick").addEventListener("click", (ev) => {
  const b = ev.target.closest("button[data-range]");
  if (!b) return;
  [S.from, S.to] = quickRange(b.dataset.range);
  syncControls();
  load();
});
$("life-event").addEventListener("change", () => { S.lifeEvent = $("life-event").value; syncControls(); load(); });
$("procedure").addEventListener("change", () => { S.procedure = $("procedure").value; syncControls(); load(); });
$("csv").addEventListener("click", downloadCsv);
$("change-token").addEventListener("click", () => askToken());
document.addEventListener("click", (ev) => {
  if (ev.target.closest("#cancel-token")) $("token-root").innerHTML = "";
  if (ev.target.closest("#retry")) { clearMessage(); S.started ? load() : start(); }
  const show = ev.target.closest("[data-show-le]");
  if (show) { S.lifeEvent = show.dataset.showLe; syncControls(); load(); }
});

let resizeTimer = null;
addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(drawAll, 150); });

// Tooltips for chart elements carrying data-tip.
const tipBox = $("tip");
document.addEventListener("pointermove", (ev) => {
  const el = ev.target.closest?.("[data-tip]");
  if (!el) { tipBox.style.display = "none"; return; }
  tipBox.textContent = el.getAttribute("data-tip");
  tipBox.style.display = "block";
  const r = tipBox.getBoundingClientRect();
  let left = ev.clientX + 14, top = ev.clientY + 14;
  if (left + r.width > innerWidth - 8) left = ev.clientX - r.width - 14;
  if (top + r.height > innerHeight - 8) top = ev.clientY - r.height - 14;
  tipBox.style.left = `${left}px`;
  tipBox.style.top = `${top}px`;
});
document.addEventListener("pointerleave", () => { tipBox.style.display = "none"; });

start();
