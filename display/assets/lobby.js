// The lobby display (/screens/lobby/{site}): numbers being called with their counter (chime, then
// a Japanese and an English announcement), waiting counts and estimated waits. No token; the one
// page a city may embed in its website (`[screens] frame_ancestors`).
import { LiveFeed, Backoff, loadCatalog, esc, waitText, clock, nameOf, siteFromPath, retryAfterMs, jittered, sleep }
  from "/assets/common.js";

// ---- test hooks (the browser tests rely on these names) --------------------------------------
window.madoguchiSpoken = window.madoguchiSpoken || [];   // every utterance text, when queued
window.madoguchiCalls = window.madoguchiCalls || [];     // {number, counter, at} when rendered

const site = siteFromPath();
const el = (id) => document.getElementById(id);

// Third-language lines for the fixed headings, rotated every ~8 s.
const L3 = {
  calling:  { zh: "正在叫号",     ko: "호출 중",     vi: "Đang gọi" },
  waiting:  { zh: "等候人数",     ko: "대기 인원",   vi: "Số người chờ" },
  estimate: { zh: "预计等候时间", ko: "예상 대기 시간", vi: "Thời gian chờ dự kiến" },
  counter:  { zh: "窗口",         ko: "창구",        vi: "Quầy" },
  recent:   { zh: "最近叫号",     ko: "최근 호출",   vi: "Số vừa gọi" },
};
const LANG_TAG = { zh: "zh-CN", ko: "ko-KR", vi: "vi-VN" };
const ROTATE_MS = 8000;
const FLASH_MS = 6600;

let catalog = null;
let cfg = { voice: true, chime: true, languages: ["ja", "en"], rotate: ["zh", "ko", "vi"] };
let board = null;
let hadSnapshot = false;
const rendered = new Map();   // "number@counter" -> element of the now-calling grid
const flashTimers = new Map();

// ---- helpers ----------------------------------------------------------------------------------
const portrait = matchMedia("(orientation: portrait)");
portrait.addEventListener?.("change", () => render());
/** Keeps the test-hook arrays from growing for weeks on a kiosk that never reloads. */
function trim(list) { if (list.length > 5000) list.splice(0, list.length - 4000); }
const callKey = (number, counter) => `${number}@${counter}`;
function counterName(id) { return nameOf(catalog?.counters, id); }
function tz() { return catalog?.site?.timezone || "Asia/Tokyo"; }

// ---- clock ------------------------------------------------------------------------------------
let lastClock = "";
function tick() {
  const now = new Date();
  let dateJa = "", dateEn = "", time = "";
  try {
    time = clock(now, tz());
    dateJa = new Intl.DateTimeFormat("ja-JP", { timeZone: tz(), month: "long", day: "numeric", weekday: "short" }).format(now);
    dateEn = new Intl.DateTimeFormat("en-GB", { timeZone: tz(), weekday: "short", day: "numeric", month: "short" }).format(now);
  } catch {
    time = now.toTimeString().slice(0, 5);
  }
  const key = time + dateJa;
  if (key !== lastClock) {
    lastClock = key;
    el("time").textContent = time;
    el("date-ja").textContent = dateJa;
    el("date-en").textContent = dateEn;
  }
}
tick();
setInterval(tick, 1000);

// ---- third-language rotation -------------------------------------------------------------------
let rotIndex = -1;
let rotTimer = null;
function setupRotation() {
  const langs = (Array.isArray(cfg.rotate) ? cfg.rotate : []).filter((l) => L3.calling[l]);
  clearInterval(rotTimer);
  document.body.classList.toggle("no-rotate", langs.length === 0);
  if (!langs.length) return;
  let first = true;
  const show = () => {
    rotIndex = (rotIndex + 1) % langs.length;
    const lang = langs[rotIndex];
    const nodes = document.querySelectorAll(".l3[data-l3]");
    const apply = () => nodes.forEach((n) => {
      n.textContent = L3[n.dataset.l3]?.[lang] || "";
      n.lang = LANG_TAG[lang] || lang;
      n.classList.remove("fade");
    });
    if (first) { first = false; apply(); return; }
    nodes.forEach((n) => n.classList.add("fade"));
    setTimeout(apply, 450);
  };
  show();
  rotTimer = setInterval(show, ROTATE_MS);
}

// ---- rendering ----------------------------------------------------------------------------------
function render(fresh = []) {
  if (!board) return;
  const counters = board.counters || [];
  const called = counters.filter((c) => c.ticket && c.ticket.status === "called")
    .sort((a, b) => String(b.ticket.since || "").localeCompare(String(a.ticket.since || "")));
  const serving = counters.filter((c) => c.ticket && c.ticket.status === "serving");

  // Now calling: keyed elements, ordered with CSS `order` so running flashes are not restarted.
  const grid = el("called");
  const n = called.length;
  grid.dataset.n = String(n);
  const cols = portrait.matches ? (n >= 4 ? 2 : 1) : (n >= 7 ? 3 : n >= 4 ? 2 : 1);
  grid.classList.toggle("c2", cols === 2);
  grid.classList.toggle("c3", cols === 3);
  const keep = new Set();
  const newlyShown = [];
  called.forEach((c, i) => {
    const key = callKey(c.ticket.number, c.id);
    keep.add(key);
    let node = rendered.get(key);
    if (!node) {
      const name = counterName(c.id);
      node = document.createElement("div");
      node.className = "call";
      node.dataset.number = c.ticket.number;
      node.dataset.counter = c.id;
      node.innerHTML = `<div class="call-in"><div class="call-num">${esc(c.ticket.number)}</div>` +
        `<div class="call-ctr"><span class="ja">${esc(name.ja)}</span><span class="en">${esc(name.en)}</span></div></div>`;
      grid.appendChild(node);
      rendered.set(key, node);
      newlyShown.push(key);
    } else {
      // Names may arrive late (catalog reloaded after a reconnect): keep them current.
      const name = counterName(c.id);
      const ja = node.querySelector(".call-ctr .ja"), en = node.querySelector(".call-ctr .en");
      if (ja && ja.textContent !== name.ja) ja.textContent = name.ja;
      if (en && en.textContent !== name.en) en.textContent = name.en;
    }
    node.style.order = String(i);
  });
  for (const [key, node] of rendered) {
    if (!keep.has(key)) {
      node.remove();
      rendered.delete(key);
      clearTimeout(flashTimers.get(key));
      flashTimers.delete(key);
    }
  }
  let empty = grid.querySelector(".empty");
  if (empty && empty.id === "boot") { empty.remove(); empty = null; }
  if (n === 0 && !empty) {
    empty = document.createElement("div");
    empty.className = "empty";
    empty.innerHTML = `<span>現在お呼びしている番号はありません</span><span class="en">No number is being called right now</span>`;
    grid.appendChild(empty);
  } else if (n > 0 && empty) {
    empty.remove();
  }
  // Flash every number that just appeared, and every number an event (re)called just now.
  const toFlash = new Set(newlyShown);
  for (const f of fresh) if (rendered.has(f)) toFlash.add(f);
  for (const key of toFlash) {
    const node = rendered.get(key);
    node.classList.remove("fresh");
    void node.offsetWidth; // restart the animation on a recall
    node.classList.add("fresh");
    clearTimeout(flashTimers.get(key));
    flashTimers.set(key, setTimeout(() => node.classList.remove("fresh"), FLASH_MS));
    window.madoguchiCalls.push({ number: node.dataset.number, counter: node.dataset.counter, at: Date.now() });
    trim(window.madoguchiCalls);
  }

  // Being served: small chips.
  el("serving").innerHTML = serving.length
    ? `<span class="serving-label">対応中<span class="en">Serving</span></span>` + serving.map((c) => {
        const name = counterName(c.id);
        return `<span class="chip" data-number="${esc(c.ticket.number)}" data-counter="${esc(c.id)}" data-status="serving">` +
          `<span class="n">${esc(c.ticket.number)}</span><span class="c">${esc(name.ja)} / ${esc(name.en)}</span></span>`;
      }).join("")
    : "";

  // Queues: waiting count and estimated wait.
  el("queues").innerHTML = (board.queues || []).map((q) => {
    const name = nameOf(catalog?.queues, q.id);
    const w = Number(q.waiting) || 0;
    const cls = [w === 0 ? "zero" : "", (q.estimated_wait_s || 0) >= 3600 ? "long" : ""].join(" ").trim();
    return `<tr data-queue="${esc(q.id)}" class="${cls}">` +
      `<td><span class="qn-ja">${esc(name.ja)}</span><span class="qn-en en">${esc(name.en)}</span></td>` +
      `<td class="wait"><span class="waiting">${w}</span><span class="unit">人</span></td>` +
      `<td class="est"><span class="ja">${esc(waitText(q.estimated_wait_s, "ja"))}</span>` +
      `<span class="en">${esc(waitText(q.estimated_wait_s, "en"))}</span></td></tr>`;
  }).join("");

  // Recent calls (newest first, one line per number).
  const seen = new Set();
  const recent = (board.recent_calls || []).filter((r) => {
    if (seen.has(r.number)) return false;
    seen.add(r.number);
    return true;
  });
  el("recent").innerHTML = recent.length
    ? recent.map((r) => {
        const name = counterName(r.counter);
        let t = "";
        try { t = r.at ? clock(r.at, tz()) : ""; } catch { t = ""; }
        return `<li data-recent="${esc(r.number)}"><span class="n">${esc(r.number)}</span>` +
          `<span class="ct"><span class="c">${esc(name.ja)}</span><span class="t">${esc(t)}</span></span></li>`;
      }).join("")
    : `<li class="none">まだ呼出はありません / No calls yet</li>`;
  requestAnimationFrame(fitRecent);
}

/** Hides recent-call rows that would be cut at the bottom of their panel. */
function fitRecent() {
  const ol = el("recent");
  const items = [...ol.children];
  items.forEach((li) => { li.style.visibility = ""; });
  const limit = ol.getBoundingClientRect().bottom + 1;
  for (const li of items) if (li.getBoundingClientRect().bottom > limit) li.style.visibility = "hidden";
}
addEventListener("resize", () => requestAnimationFrame(fitRecent));

// ---- audio: chime (Web Audio) and voice (Web Speech), strictly one call after another ----------
let actx = null;
function audioContext() {
  try {
    if (!actx) {
      const AC = window.AudioContext || window.webkitAudioContext;
      if (!AC) return null;
      actx = new AC();
    }
    if (actx.state === "suspended") actx.resume().catch(() => {});
    return actx;
  } catch {
    return null;
  }
}
// Chromium may still want a gesture: the first click or key press unlocks audio and speech.
const unlock = () => {
  audioContext();
  try { window.speechSynthesis?.resume(); } catch { /* no speech */ }
};
addEventListener("pointerdown", unlock, { passive: true });
addEventListener("keydown", unlock);

/** Three soft sine tones (ピン・ポン・パン, descending); resolves to its length in ms (0 if silent). */
async function chime() {
  const ctx = audioContext();
  if (!ctx) return 0;
  try {
    // A context that cannot run yet (no gesture) would play every stored chime at once later: skip.
    if (ctx.state !== "running") await Promise.race([ctx.resume(), sleep(300)]);
    if (ctx.state !== "running") return 0;
    const t0 = ctx.currentTime + 0.05;
    const master = ctx.createGain();
    master.gain.value = 0.5;
    master.connect(ctx.destination);
    const notes = [783.99, 659.25, 523.25]; // G5 E5 C5
    notes.forEach((f, i) => {
      const start = t0 + i * 0.42;
      for (const [mult, level] of [[1, 0.32], [2, 0.05]]) {
        const osc = ctx.createOscillator();
        const g = ctx.createGain();
        osc.type = "sine";
        osc.frequency.value = f * mult;
        g.gain.setValueAtTime(0.0001, start);
        g.gain.exponentialRampToValueAtTime(level, start + 0.03);
        g.gain.exponentialRampToValueAtTime(0.0001, start + 1.3);
        osc.connect(g).connect(master);
        osc.start(start);
        osc.stop(start + 1.35);
      }
    });
    return 2200;
  } catch {
    return 0;
  }
}

let voices = [];
function loadVoices() {
  try { voices = window.speechSynthesis?.getVoices() || []; } catch { voices = []; }
}
try {
  loadVoices();
  window.speechSynthesis?.addEventListener?.("voiceschanged", loadVoices);
} catch { /* no speech */ }
function pickVoice(lang) {
  const norm = (s) => String(s || "").replace("_", "-").toLowerCase();
  const want = norm(lang);
  const base = want.split("-")[0];
  const exact = voices.filter((v) => norm(v.lang) === want);
  const near = voices.filter((v) => norm(v.lang).split("-")[0] === base);
  const list = exact.length ? exact : near;
  return list.find((v) => v.localService) || list[0] || null;
}

let speaking = null; // keeps the current utterance referenced (Chromium drops onend of collected ones)
function speak(text, lang) {
  return new Promise((resolve) => {
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(guard);
      speaking = null;
      resolve();
    };
    // In case onend never fires (no voices, headless, a stuck engine).
    const guard = setTimeout(finish, Math.min(20000, 3000 + text.length * 160));
    try {
      const ss = window.speechSynthesis;
      const U = window.SpeechSynthesisUtterance;
      if (!ss || !U) { finish(); return; }
      const u = new U(text);
      u.lang = lang;
      const v = pickVoice(lang);
      if (v) u.voice = v;
      u.rate = lang === "ja-JP" ? 0.95 : 0.9;
      u.onend = finish;
      u.onerror = finish;
      speaking = u;
      if (ss.paused) ss.resume();
      ss.speak(u);
    } catch {
      finish();
    }
  });
}

const announcements = [];
let announcing = false;

function announcementTexts(number, counter) {
  const name = counterName(counter);
  const plain = /^\d+$/.test(String(counter));
  const texts = {
    ja: plain
      ? `受付番号 ${number}番の方、${counter}番窓口へお越しください`
      : `受付番号 ${number}番の方、${name.ja}へお越しください`,
    en: plain
      ? `Number ${number}, please come to counter ${counter}.`
      : `Number ${number}, please come to ${name.en}.`,
  };
  const langs = Array.isArray(cfg.languages) ? cfg.languages : ["ja", "en"];
  return langs.filter((l) => texts[l]).map((l) => ({ text: texts[l], lang: l === "ja" ? "ja-JP" : "en-US" }));
}

function announce(number, counter) {
  const item = { chime: cfg.chime !== false, utterances: [] };
  if (cfg.voice !== false) item.utterances = announcementTexts(number, counter);
  if (!item.chime && !item.utterances.length) return;
  for (const u of item.utterances) window.madoguchiSpoken.push(u.text);
  trim(window.madoguchiSpoken);
  announcements.push(item);
  if (!announcing) drain();
}

async function drain() {
  announcing = true;
  try {
    while (announcements.length) {
      const item = announcements.shift();
      try {
        if (item.chime) {
          const ms = await chime();
          if (ms) await sleep(ms);
        }
        for (const u of item.utterances) {
          await speak(u.text, u.lang);
          await sleep(250);
        }
      } catch { /* never let audio break the screen */ }
      await sleep(500);
    }
  } finally {
    announcing = false;
  }
}

// ---- live feed ----------------------------------------------------------------------------------
function calledKeys(b) {
  return new Set((b?.counters || []).filter((c) => c.ticket?.status === "called").map((c) => callKey(c.ticket.number, c.id)));
}

function setLive(up) {
  document.body.dataset.live = up ? "1" : "0";
  el("conn").classList.toggle("show", !up);
}

function onSnapshot(b) {
  const before = hadSnapshot ? calledKeys(board) : null;
  board = b;
  render();
  // After a resync or reconnect, calls we never heard about are still announced.
  if (before) {
    for (const c of b.counters || []) {
      if (c.ticket?.status === "called" && !before.has(callKey(c.ticket.number, c.id))) announce(c.ticket.number, c.id);
    }
  }
  hadSnapshot = true;
}

function onEvent(ev, b) {
  board = b;
  const called = ev && ev.kind === "ticket_called" && ev.number != null && ev.counter != null;
  render(called ? [callKey(ev.number, ev.counter)] : []);
  if (called) announce(ev.number, ev.counter);
}

let wasDown = false;
function onStatus(up) {
  setLive(up);
  if (!up) wasDown = true;
  else if (wasDown) {
    wasDown = false;
    // Names or screen settings may have changed while we were away; refresh quietly.
    reloadCatalog();
  }
}

let reloading = false;
/** Reloads names and settings, waiting out a 429's Retry-After; gives up quietly (the old ones stay). */
async function reloadCatalog() {
  if (reloading) return;
  reloading = true;
  try {
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const c = await loadCatalog(site);
        if (c) { applyCatalog(c); render(); }
        return;
      } catch (e) {
        const wait = retryAfterMs(e);
        if (!wait) return;
        await sleep(jittered(wait));
      }
    }
  } finally {
    reloading = false;
  }
}

function applyCatalog(c) {
  catalog = c;
  const lobby = c?.screens?.lobby || {};
  const prevRotate = JSON.stringify(cfg.rotate);
  cfg = {
    voice: lobby.voice ?? true,
    chime: lobby.chime ?? true,
    languages: Array.isArray(lobby.languages) ? lobby.languages : ["ja", "en"],
    rotate: Array.isArray(lobby.rotate) ? lobby.rotate : ["zh", "ko", "vi"],
  };
  const name = c?.site?.name || { ja: site, en: site };
  el("site-ja").textContent = name.ja;
  el("site-en").textContent = name.en;
  document.title = `${name.ja} 呼出案内 / ${name.en} — Now calling`;
  tick();
  if (!rotTimer || prevRotate !== JSON.stringify(cfg.rotate)) setupRotation();
}

async function start() {
  setLive(false);
  el("conn").classList.remove("show");
  const backoff = new Backoff(1000, 15000);
  for (;;) {
    try {
      applyCatalog(await loadCatalog(site));
      break;
    } catch (e) {
      if (e && e.status === 404) {
        const boot = el("boot");
        if (boot) boot.innerHTML = `<span>この画面の設定が見つかりません（${esc(site)}）</span><span class="en">Unknown site</span>`;
      } else {
        el("conn").classList.add("show");
      }
      // A 429 or 503 says how long to wait; never come back sooner.
      await sleep(Math.max(backoff.next(), jittered(retryAfterMs(e))));
    }
  }
  new LiveFeed(site, { onSnapshot, onEvent, onStatus });
}

// Once a day, early in the morning (site time), reload to pick up a new version of this page —
// only while live, silent, and after checking the page itself answers (never a blank screen).
const loadedAt = Date.now();
setInterval(async () => {
  let hour = -1;
  try { hour = Number(new Intl.DateTimeFormat("en-GB", { timeZone: tz(), hour: "2-digit", hour12: false }).format(new Date())); } catch { return; }
  if (hour !== 4 || Date.now() - loadedAt < 2 * 3600 * 1000) return;
  if (document.body.dataset.live !== "1" || announcing || announcements.length) return;
  try {
    const res = await fetch(location.href, { cache: "no-store" });
    if (res.ok) location.reload();
  } catch { /* stay on the current page */ }
}, 5 * 60 * 1000);

start();
