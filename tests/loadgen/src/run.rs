//! One load run, start to report:
//!
//! 1. N lobby sockets open and take their snapshot;
//! 2. M phone tickets are issued, and a phone channel follows each;
//! 3. the load phase: K counter loops and the dispensers at R tickets a second for S seconds
//!    (the counters go on, at most 10 s more, until every phone ticket has been called);
//! 4. the sockets must reach the site's final seq, each phone must show what
//!    `GET /api/v1/tickets/{token}` shows; the server's peak memory is read; all sockets close;
//! 5. the baseline runs on as many sockets;
//! 6. the report.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::Value;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::clock::{now_us, progress};
use crate::http::Api;
use crate::load::{self, IssueStats, Shared, Site};
use crate::lobby::{self, CallBook, LobbyProgress, LobbyStats};
use crate::phone::{self, PhoneTicket, PhoneView};
use crate::report::{cpu_between, cpu_s, mib, vm_kb, Report};
use crate::stats::{micros, percentile_ms, round3};
use crate::Cli;

pub(crate) async fn run(cli: Cli, server: String) -> Result<Report> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            let need = (cli.sockets + cli.phones) as u64 + 256;
            if limit < need {
                progress!("warning: the open-file limit is {limit}, the run needs about {need}");
            }
        }
        Err(e) => progress!("warning: could not raise the open-file limit: {e}"),
    }
    let api = Api::new(&server)?;
    let ready = api
        .get("/readyz", &cli.floor_token)
        .await
        .with_context(|| format!("GET {server}/readyz"))?;
    if ready.status != 200 {
        bail!("{server}/readyz answered {} {}", ready.status, ready.body);
    }
    let site = Site::prepare(&api, &cli.site, cli.counters, &cli).await?;
    let planned = cli.phones as u64 + (cli.issue_rate * cli.duration).round() as u64;
    if planned > site.capacity {
        progress!(
            "warning: {planned} tickets planned, the site's queues hold {} numbers a day; expect 409 numbers_exhausted",
            site.capacity
        );
    }
    let run_id = format!(
        "lg{}",
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let shared = Arc::new(Shared {
        api: api.clone(),
        site: site.id.clone(),
        dispenser_token: cli.dispenser_token.clone(),
        counter_token: cli.counter_token.clone(),
        book: Arc::new(CallBook::default()),
        called_by: Mutex::new(HashMap::new()),
        issued: AtomicU64::new(0),
        issue_errors: AtomicU64::new(0),
        calls: AtomicU64::new(0),
        stop_counters: AtomicBool::new(false),
    });
    let gate = Arc::new(Semaphore::new(cli.connect_concurrency.max(1)));
    let (stop_tx, stop_rx) = watch::channel(false);

    // 1. Lobby sockets.
    let n = cli.sockets;
    let lobby_progress = Arc::new(LobbyProgress::new(n));
    // The lobby and the phones may follow another instance than the one the counters use.
    let live_api = match &cli.lobby_server {
        Some(url) => Api::new(url)?,
        None => api.clone(),
    };
    if cli.lobby_server.is_some() {
        progress!("lobby and phones on {}", live_api.ws_url(""));
    }
    let live_url = live_api.ws_url(&format!("/api/v1/sites/{}/live", site.id));
    let mut lobby_tasks = JoinSet::new();
    for i in 0..n {
        lobby_tasks.spawn(lobby::run_socket(
            i,
            live_url.clone(),
            shared.book.clone(),
            lobby_progress.clone(),
            gate.clone(),
            stop_rx.clone(),
        ));
    }
    let settle_deadline = now_us() + 60_000_000 + n as u64 * 10_000;
    let mut last_note = 0;
    while lobby_progress.settled.load(Ordering::Relaxed) < n {
        if now_us() > settle_deadline {
            bail!(
                "only {} of {n} lobby sockets settled",
                lobby_progress.settled.load(Ordering::Relaxed)
            );
        }
        if now_us() - last_note > 1_000_000 {
            last_note = now_us();
            progress!(
                "lobby: {}/{n} sockets have their snapshot",
                lobby_progress.settled.load(Ordering::Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (open_lobby, _) = lobby_progress.lowest_alive_seq();
    progress!("lobby: {open_lobby}/{n} sockets open");

    // 2. Phone tickets, then their channels.
    let mut phone_issues = IssueStats::default();
    let mut phone_tickets: Vec<PhoneTicket> = Vec::new();
    {
        let mut tasks = JoinSet::new();
        let issuing = Arc::new(Semaphore::new(8));
        for i in 0..cli.phones {
            let shared = shared.clone();
            let issuing = issuing.clone();
            let body = site.served_plans[i % site.served_plans.len().max(1)].clone();
            let key = format!("{run_id}-p{i}");
            tasks.spawn(async move {
                let _permit = issuing.acquire().await.expect("never closed");
                let s = &shared;
                (
                    i,
                    load::issue(&s.api, &s.site, &s.dispenser_token, &body, &key).await,
                )
            });
        }
        let mut issued = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (i, mut result) = done.expect("an issue task does not panic");
            if let Some((token, number)) = result.ticket.take() {
                issued.push((i, PhoneTicket { token, number }));
            }
            phone_issues.add(result);
        }
        issued.sort_by_key(|(i, _)| *i);
        phone_tickets.extend(issued.into_iter().map(|(_, t)| t));
    }
    if cli.phones > 0 {
        progress!(
            "phones: {} tickets issued ({} errors)",
            phone_issues.ok,
            phone_issues.errors
        );
        for e in &phone_issues.first_errors {
            progress!("  phone issue error: {e}");
        }
    }
    let views: Vec<Arc<Mutex<PhoneView>>> = phone_tickets
        .iter()
        .map(|_| Arc::new(Mutex::new(PhoneView::default())))
        .collect();
    let mut phone_tasks = JoinSet::new();
    for (t, view) in phone_tickets.iter().zip(&views) {
        let url = live_api.ws_url(&format!("/api/v1/tickets/{}/live", t.token));
        phone_tasks.spawn(phone::run_phone(
            url,
            t.clone(),
            view.clone(),
            gate.clone(),
            stop_rx.clone(),
        ));
    }
    let phones_deadline = now_us() + 30_000_000;
    loop {
        let shown = views
            .iter()
            .filter(|v| v.lock().unwrap_or_else(|p| p.into_inner()).messages > 0)
            .count();
        if shown == views.len() || now_us() > phones_deadline || phone_tasks.len() < views.len() {
            progress!("phones: {shown}/{} channels show their ticket", views.len());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 3. The load phase.
    let start_seq = board_seq(&api, &site.id, &cli.floor_token).await?;
    progress!(
        "load: {} counters ({}) on queues {}, {:.1} tickets/s for {:.1} s from seq {start_seq}",
        site.counters.len(),
        site.counters.join(","),
        site.served_queues.join(","),
        cli.issue_rate,
        cli.duration
    );
    let load_start = now_us();
    let server_pid = cli.server_pid.map(|p| p.to_string()).unwrap_or_default();
    let cpu_before = (cpu_s(&server_pid), cpu_s("self"));
    let mut counter_tasks = JoinSet::new();
    for c in &site.counters {
        counter_tasks.spawn(load::counter_loop(
            shared.clone(),
            c.clone(),
            Duration::from_millis(cli.counter_pause_ms),
        ));
    }
    let dispenser = if cli.issuers > 0 {
        let targets = match cli.issue_sites.as_deref() {
            None => vec![(site.id.clone(), site.served_plans.clone())],
            Some(list) => issue_targets(&api, list, &cli).await?,
        };
        let mut servers = vec![api.clone()];
        for url in cli.issue_servers.iter().flat_map(|l| l.split(',')) {
            servers.push(Api::new(url.trim())?);
        }
        if servers.len() > 1 {
            progress!("issuing through {} server instances", servers.len());
        }
        tokio::spawn(load::dispense_closed(
            shared.clone(),
            servers,
            targets,
            cli.issuers,
            cli.duration,
            run_id.clone(),
        ))
    } else {
        tokio::spawn(load::dispense(
            shared.clone(),
            site.served_plans.clone(),
            cli.issue_rate,
            cli.duration,
            run_id.clone(),
        ))
    };
    let reporter = {
        let shared = shared.clone();
        let lobby_progress = lobby_progress.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let (alive, lowest) = lobby_progress.lowest_alive_seq();
                progress!(
                    "load: issued {} (errors {}), calls {}, {alive} lobby sockets, lowest seq {}",
                    shared.issued.load(Ordering::Relaxed),
                    shared.issue_errors.load(Ordering::Relaxed),
                    shared.calls.load(Ordering::Relaxed),
                    lowest.map_or("-".to_owned(), |s| s.to_string())
                );
            }
        })
    };
    let dispensed = dispenser.await.context("the dispensers")?;
    let dispense_end = now_us();
    // The counters go on until every phone ticket was called (they wait at the front of their
    // queues), at most 10 s more.
    let phone_numbers: Vec<&str> = phone_tickets.iter().map(|t| t.number.as_str()).collect();
    while !site.counters.is_empty() && now_us() < dispense_end + 10_000_000 {
        let all_called = {
            let called = shared.called_by.lock().unwrap_or_else(|p| p.into_inner());
            phone_numbers.iter().all(|n| called.contains_key(*n))
        };
        if all_called {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shared.stop_counters.store(true, Ordering::Relaxed);
    let mut counter_stats = Vec::new();
    while let Some(done) = counter_tasks.join_next().await {
        counter_stats.push(done.context("a counter loop")?);
    }
    let load_s = (now_us() - load_start) as f64 / 1e6;
    let cpu_after = (cpu_s(&server_pid), cpu_s("self"));

    // 4. Everyone must catch up.
    let end_seq = board_seq(&api, &site.id, &cli.floor_token).await?;
    progress!("load: done in {load_s:.1} s; waiting for the sockets to reach seq {end_seq}");
    let catch_up_deadline = now_us() + 20_000_000;
    loop {
        let (_, lowest) = lobby_progress.lowest_alive_seq();
        if lowest.is_none_or(|s| s >= end_seq) || now_us() > catch_up_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reporter.abort();
    let lobby_behind = lobby_progress
        .last_seq
        .iter()
        .zip(&lobby_progress.alive)
        .filter(|(s, a)| a.load(Ordering::Relaxed) && s.load(Ordering::Relaxed) < end_seq)
        .count() as u64;
    let phone_stale = phones_match_server(&api, &cli.floor_token, &phone_tickets, &views).await;
    let rss_kb = cli.server_pid.and_then(|pid| vm_kb(pid, "VmHWM"));
    let _ = stop_tx.send(true);
    let mut lobby_stats: Vec<LobbyStats> = Vec::with_capacity(n);
    let mut schedule: Vec<(u64, bool)> = Vec::new();
    while let Some(done) = lobby_tasks.join_next().await {
        let mut stats = done.context("a lobby socket")?;
        if !stats.arrivals.is_empty() {
            // Socket 0's: the load phase's events, as offsets from its first.
            let during: Vec<(u64, bool)> = stats
                .arrivals
                .drain(..)
                .filter(|(at, _)| *at >= load_start)
                .collect();
            schedule = during
                .iter()
                .map(|(at, call)| (at - during[0].0, *call))
                .collect();
        }
        lobby_stats.push(stats);
    }
    let mut phone_stats = Vec::new();
    while let Some(done) = phone_tasks.join_next().await {
        phone_stats.push(done.context("a phone channel")?);
    }
    progress!("sockets closed");

    // The report, madoguchi's part.
    let mut r = Report {
        sockets_requested: n,
        phones_requested: cli.phones,
        counters: site.counters.len(),
        duration_s: round3(load_s),
        issue_rate_asked: cli.issue_rate,
        issuers: cli.issuers,
        ..Report::default()
    };
    r.issued = phone_issues.ok + dispensed.ok;
    r.issued_dispensers = dispensed.ok;
    r.issue_errors = phone_issues.errors + dispensed.errors;
    for e in &dispensed.first_errors {
        progress!("  issue error: {e}");
    }
    r.issue_per_s = if dispensed.elapsed_s > 0.0 {
        round3(dispensed.ok as f64 / dispensed.elapsed_s)
    } else {
        0.0
    };
    let mut issue_lat = dispensed.latencies_us;
    r.issue_p50_ms = percentile_ms(&mut issue_lat, 50.0);
    r.issue_p99_ms = percentile_ms(&mut issue_lat, 99.0);
    r.calls = counter_stats.iter().map(|c| c.called.len() as u64).sum();
    r.counter_idle = counter_stats.iter().map(|c| c.idle).sum();
    r.counter_errors = counter_stats.iter().map(|c| c.errors).sum();
    for e in counter_stats.iter().flat_map(|c| &c.first_errors) {
        progress!("  counter error: {e}");
    }
    r.events = end_seq.saturating_sub(start_seq);
    r.events_per_s = if load_s > 0.0 {
        round3(r.events as f64 / load_s)
    } else {
        0.0
    };
    r.call_event_bytes = lobby_progress.call_event_bytes.load(Ordering::Relaxed);
    let calls_made = shared.book.len() as u64;
    let mut screen: Vec<u32> = Vec::new();
    for mut s in lobby_stats {
        lobby::resolve_pending(&mut s, &shared.book);
        if s.opened {
            r.sockets += 1;
        } else {
            r.lobby_connect_errors += 1;
        }
        r.lobby_dropped += u64::from(s.dropped);
        r.lobby_gaps += s.feed.gaps;
        r.lobby_out_of_order += s.feed.out_of_order;
        r.lobby_bad_messages += s.feed.bad_messages;
        r.lobby_resnapshots += s.feed.resnapshots;
        if s.opened && !s.dropped && s.feed.resnapshots == 0 {
            r.screen_missing += calls_made.saturating_sub(s.latencies_us.len() as u64);
        }
        screen.extend(s.latencies_us);
    }
    r.call_screen_pairs = screen.len() as u64;
    r.call_to_screen_p50_ms = percentile_ms(&mut screen, 50.0);
    r.call_to_screen_p99_ms = percentile_ms(&mut screen, 99.0);
    drop(screen);
    r.lobby_behind = lobby_behind;
    for s in &phone_stats {
        r.phones += usize::from(s.opened);
        r.phone_connect_errors += u64::from(!s.opened);
        r.phone_dropped += u64::from(s.dropped);
        r.phone_bad_messages += s.bad_messages;
    }
    r.phone_stale = phone_stale;
    let mut phone_lat = Vec::new();
    {
        let called_by = shared.called_by.lock().unwrap_or_else(|p| p.into_inner());
        let mut key = String::new();
        for (t, view) in phone_tickets.iter().zip(&views) {
            let Some(counter) = called_by.get(&t.number) else {
                continue;
            };
            r.phones_called += 1;
            let view = view.lock().unwrap_or_else(|p| p.into_inner());
            if !view.opened {
                continue;
            }
            match &view.called {
                Some((c, at)) if c == counter => {
                    CallBook::key_into(&mut key, counter, &t.number);
                    if let Some(sent) = shared.book.get(&key) {
                        phone_lat.push(micros(sent, *at));
                    }
                }
                _ => r.phone_missing += 1,
            }
        }
    }
    r.phone_call_p50_ms = percentile_ms(&mut phone_lat, 50.0);
    r.phone_call_p99_ms = percentile_ms(&mut phone_lat, 99.0);
    r.rss_mb = rss_kb.map(mib);
    r.server_cpu_s = cpu_between(cpu_before.0, cpu_after.0);
    r.loadgen_cpu_s = cpu_between(cpu_before.1, cpu_after.1);

    // 5. The baseline.
    let baseline_seconds = cli.baseline_seconds.unwrap_or(cli.duration.min(5.0));
    let call_event = lobby_progress
        .call_event_text
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if let Some(call_event) = call_event.filter(|_| r.sockets > 0 && baseline_seconds > 0.0) {
        // The feed's own schedule (bursts and all) for the first seconds of the load, or its
        // mean rate if socket 0 saw no events.
        let horizon_us = (baseline_seconds * 1e6) as u64;
        let mut offsets: Vec<(u64, bool)> = schedule
            .into_iter()
            .filter(|(o, _)| *o < horizon_us)
            .collect();
        if !offsets.iter().any(|(_, call)| *call) {
            let rate = r.events_per_s.clamp(1.0, 2000.0);
            let count = ((rate * baseline_seconds).round() as u64).max(1);
            offsets = (0..count)
                .map(|i| ((i as f64 * 1e6 / rate) as u64, true))
                .collect();
        }
        let b = crate::baseline::measure(r.sockets, &call_event, &offsets, cli.connect_concurrency)
            .await?;
        r.baseline_sockets = b.sockets;
        r.baseline_messages = b.messages;
        r.baseline_missing = b.missing;
        r.baseline_p50_ms = b.p50_ms;
        r.baseline_p99_ms = b.p99_ms;
        r.baseline_rss_mb = b.rss_kb.map(mib);
        r.baseline_cpu_s = b.cpu_s;
        if let (Some(m), Some(b)) = (r.call_to_screen_p99_ms, b.p99_ms) {
            if b > 0.0 {
                r.ratio_p99 = Some(round3(m / b));
            }
        }
    } else {
        progress!("baseline: skipped (no sockets, or no call reached a screen)");
    }
    r.tally();
    Ok(r)
}

/// The site's current seq (`GET /board` with a token, which is never rate-limited).
async fn board_seq(api: &Api, site: &str, token: &str) -> Result<u64> {
    let a = api
        .get(&format!("/api/v1/sites/{site}/board"), token)
        .await
        .context("GET board")?;
    a.body["seq"]
        .as_u64()
        .with_context(|| format!("GET board: {} {}", a.status, a.body))
}

/// How many open phone channels still show something other than `GET /api/v1/tickets/{token}`
/// after a few seconds' grace.
async fn phones_match_server(
    api: &Api,
    token: &str,
    tickets: &[PhoneTicket],
    views: &[Arc<Mutex<PhoneView>>],
) -> u64 {
    let mut unmatched: Vec<usize> = (0..tickets.len())
        .filter(|&i| views[i].lock().unwrap_or_else(|p| p.into_inner()).opened)
        .collect();
    let deadline = now_us() + 5_000_000;
    let mut first_difference = None;
    loop {
        let mut still = Vec::new();
        for &i in &unmatched {
            let server = match api
                .get(&format!("/api/v1/tickets/{}", tickets[i].token), token)
                .await
            {
                Ok(a) if a.status == 200 => a.body["ticket"].clone(),
                Ok(a) => Value::String(format!("{} {}", a.status, a.body)),
                Err(e) => Value::String(e.to_string()),
            };
            let shown = views[i]
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .latest
                .clone();
            if shown.as_ref() != Some(&server) {
                first_difference = Some((tickets[i].number.clone(), shown, server));
                still.push(i);
            }
        }
        unmatched = still;
        if unmatched.is_empty() || now_us() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    if let (false, Some((number, shown, server))) = (unmatched.is_empty(), first_difference) {
        progress!(
            "phones: {} channels differ from the server; e.g. ticket {number}: shown {} vs server {server}",
            unmatched.len(),
            shown.map_or("nothing".to_owned(), |v| v.to_string())
        );
    }
    unmatched.len() as u64
}

/// The sites of `--issue-sites` (`all`: every site the server has) with the plans a dispenser
/// issues there (every queue a single procedure routes to).
async fn issue_targets(
    api: &Api,
    list: &str,
    cli: &crate::Cli,
) -> Result<Vec<(String, Vec<Value>)>> {
    let ids: Vec<String> = if list == "all" {
        let answer = api.get("/api/v1/sites", &cli.floor_token).await?;
        answer.body["sites"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect()
    } else {
        list.split(',').map(|s| s.trim().to_owned()).collect()
    };
    let mut targets = Vec::new();
    for id in ids {
        let site = Site::prepare(api, &id, 0, cli).await?;
        targets.push((site.id, site.served_plans));
    }
    progress!("issuing at {} sites", targets.len());
    Ok(targets)
}
