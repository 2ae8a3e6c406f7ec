//! The writers: dispensers issuing at a fixed rate and counters calling, starting and
//! completing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::clock::{now_us, progress};
use crate::http::Api;
use crate::lobby::CallBook;
use crate::stats::micros;

/// What the site offers, as far as the loadgen needs it.
pub(crate) struct Site {
    pub(crate) id: String,
    /// The counters the loops run on.
    pub(crate) counters: Vec<String>,
    /// One issue body per queue that the counters serve and a single procedure routes to.
    /// Phones and dispensers cycle through them, so every ticket can be called.
    pub(crate) served_plans: Vec<Value>,
    /// The queues of `served_plans`.
    pub(crate) served_queues: Vec<String>,
    /// Numbers per business day over those queues.
    pub(crate) capacity: u64,
}

impl Site {
    /// Reads `GET /api/v1/sites/{site}/catalog` and opens the chosen counters if they are not.
    pub(crate) async fn prepare(api: &Api, site: &str, k: usize, cli: &crate::Cli) -> Result<Site> {
        let answer = api
            .get(&format!("/api/v1/sites/{site}/catalog"), &cli.floor_token)
            .await
            .context("GET catalog")?;
        if answer.status != 200 {
            bail!("GET catalog: {} {}", answer.status, answer.body);
        }
        let catalog = answer.body;
        let queues = catalog["queues"].as_array().cloned().unwrap_or_default();
        let counters = catalog["counters"].as_array().cloned().unwrap_or_default();
        // The first queue (configuration order) that handles a procedure is where a plan of that
        // procedure alone waits.
        let mut first_queue: HashMap<&str, &str> = HashMap::new();
        for q in &queues {
            let id = q["id"].as_str().unwrap_or("");
            for p in q["procedures"].as_array().into_iter().flatten() {
                if let Some(p) = p.as_str() {
                    first_queue.entry(p).or_insert(id);
                }
            }
        }
        let mut plans = Vec::new();
        for q in &queues {
            let id = q["id"].as_str().unwrap_or("");
            let procedure = q["procedures"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .find(|p| first_queue.get(p) == Some(&id));
            if let Some(p) = procedure {
                let (lo, hi) = (q["range"][0].as_u64(), q["range"][1].as_u64());
                let numbers = match (lo, hi) {
                    (Some(lo), Some(hi)) if hi >= lo => hi - lo + 1,
                    _ => 999,
                };
                plans.push((id.to_owned(), json!({"procedures": [p]}), numbers));
            }
        }
        let chosen = choose_counters(&counters, &plans, k, cli.counter_ids.as_deref())?;
        let served: Vec<&str> = chosen
            .iter()
            .flat_map(|c| c["profile"]["queues"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .collect();
        let served_plans: Vec<&(String, Value, u64)> = plans
            .iter()
            // Without counters, every queue (nobody is called anyway).
            .filter(|(q, _, _)| chosen.is_empty() || served.contains(&q.as_str()))
            .collect();
        if served_plans.is_empty() {
            bail!(
                "site {site}: the chosen counters serve no queue a single-procedure plan routes to"
            );
        }
        for c in &chosen {
            let id = c["id"].as_str().unwrap_or("");
            if c["state"].as_str() != Some("open") {
                let a = api
                    .post(
                        &format!("/api/v1/sites/{site}/counters/{id}/open"),
                        &cli.counter_token,
                        None,
                    )
                    .await
                    .context("open a counter")?;
                if a.status != 200 {
                    bail!("open counter {id}: {} {}", a.status, a.body);
                }
                progress!("opened counter {id}");
            }
        }
        Ok(Site {
            id: site.to_owned(),
            counters: chosen
                .iter()
                .map(|c| c["id"].as_str().unwrap_or("").to_owned())
                .collect(),
            served_queues: served_plans.iter().map(|(q, _, _)| q.clone()).collect(),
            capacity: served_plans.iter().map(|(_, _, n)| n).sum(),
            served_plans: served_plans.iter().map(|(_, b, _)| b.clone()).collect(),
        })
    }
}

/// The counters to run: `ids` if given, else `k` of them chosen so that as many queues as
/// possible have a counter that serves them first (one per queue, in catalog order), then the
/// rest in catalog order. In the demo site: 6 (certificates), 9 (okuyami), 1 (onestop), 8
/// (welfare), then 2, 3…
fn choose_counters<'a>(
    counters: &'a [Value],
    plans: &[(String, Value, u64)],
    k: usize,
    ids: Option<&str>,
) -> Result<Vec<&'a Value>> {
    let id = |c: &Value| c["id"].as_str().unwrap_or("").to_owned();
    if let Some(ids) = ids {
        return ids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|want| {
                counters
                    .iter()
                    .find(|c| id(c) == want)
                    .with_context(|| format!("no counter {want:?} at this site"))
            })
            .collect();
    }
    if counters.len() < k {
        bail!(
            "the site has {} counters, --counters asks for {k}",
            counters.len()
        );
    }
    let mut chosen: Vec<&Value> = Vec::new();
    for (queue, _, _) in plans {
        if chosen.len() == k {
            break;
        }
        let first = counters.iter().find(|c| {
            c["profile"]["queues"][0].as_str() == Some(queue.as_str())
                && c["state"].as_str() != Some("closed")
                && !chosen.iter().any(|d| id(d) == id(c))
        });
        chosen.extend(first);
    }
    for c in counters {
        if chosen.len() == k {
            break;
        }
        if !chosen.iter().any(|d| id(d) == id(c)) {
            chosen.push(c);
        }
    }
    Ok(chosen)
}

/// What the writers share with each other and with the orchestrator.
pub(crate) struct Shared {
    pub(crate) api: Api,
    pub(crate) site: String,
    pub(crate) dispenser_token: String,
    pub(crate) counter_token: String,
    /// When each call was asked for.
    pub(crate) book: Arc<CallBook>,
    /// Every ticket the counters called: number → counter.
    pub(crate) called_by: Mutex<HashMap<String, String>>,
    /// Tallies for progress lines.
    pub(crate) issued: AtomicU64,
    pub(crate) issue_errors: AtomicU64,
    pub(crate) calls: AtomicU64,
    /// Set when the counters should stop.
    pub(crate) stop_counters: AtomicBool,
}

/// One issue: its answer's status (or a transport error) and latency.
pub(crate) struct Issued {
    pub(crate) ok: bool,
    pub(crate) replayed: bool,
    pub(crate) latency_us: u32,
    pub(crate) ticket: Option<(String, String)>,
    pub(crate) error: Option<String>,
}

/// `POST /api/v1/sites/{site}/tickets` once.
pub(crate) async fn issue(api: &Api, site: &str, token: &str, body: &Value, key: &str) -> Issued {
    let start = now_us();
    let answer = api
        .send(
            reqwest::Method::POST,
            &format!("/api/v1/sites/{site}/tickets"),
            token,
            Some(body),
            Some(key),
        )
        .await;
    let latency_us = micros(start, now_us());
    match answer {
        Ok(a) if a.status == 201 || a.status == 200 => {
            let t = &a.body["ticket"];
            let ticket = t["token"]
                .as_str()
                .zip(t["number"].as_str())
                .map(|(tok, n)| (tok.to_owned(), n.to_owned()));
            Issued {
                ok: true,
                replayed: a.status == 200,
                latency_us,
                ticket,
                error: None,
            }
        }
        Ok(a) => Issued {
            ok: false,
            replayed: false,
            latency_us,
            ticket: None,
            error: Some(format!("{} {}", a.status, a.body)),
        },
        Err(e) => Issued {
            ok: false,
            replayed: false,
            latency_us,
            ticket: None,
            error: Some(format!("transport: {e}")),
        },
    }
}

#[derive(Default, Debug)]
pub(crate) struct IssueStats {
    pub(crate) ok: u64,
    pub(crate) replayed: u64,
    pub(crate) errors: u64,
    pub(crate) latencies_us: Vec<u32>,
    pub(crate) first_errors: Vec<String>,
    /// Seconds from the first scheduled issue to the last answer.
    pub(crate) elapsed_s: f64,
}

impl IssueStats {
    pub(crate) fn add(&mut self, issued: Issued) {
        if issued.ok {
            self.ok += 1;
            self.latencies_us.push(issued.latency_us);
            if issued.replayed {
                self.replayed += 1;
            }
        } else {
            self.errors += 1;
            self.note_error(issued.error);
        }
    }

    /// Adds another client's tallies to these.
    fn merge(&mut self, other: IssueStats) {
        self.ok += other.ok;
        self.replayed += other.replayed;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
        other
            .first_errors
            .into_iter()
            .for_each(|e| self.note_error(Some(e)));
    }

    /// Keeps the first few error texts.
    fn note_error(&mut self, error: Option<String>) {
        if self.first_errors.len() < 5 {
            self.first_errors.extend(error);
        }
    }
}

/// Issues `rate` tickets a second for `seconds`, on a fixed schedule (each issue its own task,
/// so a slow answer does not slow the offered rate), cycling through `plans`.
pub(crate) async fn dispense(
    shared: Arc<Shared>,
    plans: Vec<Value>,
    rate: f64,
    seconds: f64,
    run_id: String,
) -> IssueStats {
    let mut stats = IssueStats::default();
    if rate <= 0.0 || seconds <= 0.0 || plans.is_empty() {
        return stats;
    }
    let total = (rate * seconds).round() as u64;
    let start = tokio::time::Instant::now();
    let start_us = now_us();
    let mut tasks = JoinSet::new();
    for i in 0..total {
        tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
        let shared = shared.clone();
        let body = plans[i as usize % plans.len()].clone();
        let key = format!("{run_id}-d{i}");
        tasks.spawn(async move {
            let s = &shared;
            let issued = issue(&s.api, &s.site, &s.dispenser_token, &body, &key).await;
            if issued.ok {
                s.issued.fetch_add(1, Ordering::Relaxed);
            } else {
                s.issue_errors.fetch_add(1, Ordering::Relaxed);
            }
            issued
        });
        while let Some(done) = tasks.try_join_next() {
            stats.add(done.expect("an issue task does not panic"));
        }
    }
    while let Some(done) = tasks.join_next().await {
        stats.add(done.expect("an issue task does not panic"));
    }
    stats.elapsed_s = (now_us() - start_us) as f64 / 1e6;
    stats
}

/// `clients` dispensers issuing back to back (each waits for its answer) for `seconds`; client
/// `c` issues at `targets[c % targets.len()]` (a site and its plans), through
/// `servers[c % servers.len()]` (instances sharing one store).
pub(crate) async fn dispense_closed(
    shared: Arc<Shared>,
    servers: Vec<Api>,
    targets: Vec<(String, Vec<Value>)>,
    clients: usize,
    seconds: f64,
    run_id: String,
) -> IssueStats {
    let mut stats = IssueStats::default();
    if clients == 0 || seconds <= 0.0 || targets.iter().any(|(_, p)| p.is_empty()) {
        return stats;
    }
    let start_us = now_us();
    let end_us = start_us + (seconds * 1e6) as u64;
    let mut tasks = JoinSet::new();
    for c in 0..clients {
        let shared = shared.clone();
        let (site, plans) = targets[c % targets.len()].clone();
        let api = servers[c % servers.len()].clone();
        let run_id = run_id.clone();
        tasks.spawn(async move {
            let s = &shared;
            let mut mine = IssueStats::default();
            let mut i = 0usize;
            while now_us() < end_us {
                let body = &plans[(c + i * clients) % plans.len()];
                let key = format!("{run_id}-c{c}-{i}");
                let issued = issue(&api, &site, &s.dispenser_token, body, &key).await;
                if issued.ok {
                    s.issued.fetch_add(1, Ordering::Relaxed);
                } else {
                    s.issue_errors.fetch_add(1, Ordering::Relaxed);
                }
                mine.add(issued);
                i += 1;
            }
            mine
        });
    }
    while let Some(done) = tasks.join_next().await {
        stats.merge(done.expect("an issuing client does not panic"));
    }
    stats.elapsed_s = (now_us() - start_us) as f64 / 1e6;
    stats
}

#[derive(Default, Debug)]
pub(crate) struct CounterStats {
    /// Tickets this counter called: their numbers.
    pub(crate) called: Vec<String>,
    /// `call-next` answered 204 (nobody waiting).
    pub(crate) idle: u64,
    /// Answers other than those expected (a transport error, a 5xx, a 409 for a ticket the
    /// loop had just called…).
    pub(crate) errors: u64,
    pub(crate) first_errors: Vec<String>,
}

impl CounterStats {
    fn error(&mut self, what: String) {
        self.errors += 1;
        if self.first_errors.len() < 5 {
            self.first_errors.push(what);
        }
    }
}

/// Calls, starts and completes at `counter` until `stop_counters` is set.
pub(crate) async fn counter_loop(
    shared: Arc<Shared>,
    counter: String,
    pause: Duration,
) -> CounterStats {
    let mut stats = CounterStats::default();
    let (api, token) = (&shared.api, &shared.counter_token);
    let site = &shared.site;
    let path = |action: &str| format!("/api/v1/sites/{site}/counters/{counter}/{action}");
    let idle_pause = pause.max(Duration::from_millis(20));
    while !shared.stop_counters.load(Ordering::Relaxed) {
        let sent = now_us();
        let answer = api.post(&path("call-next"), token, None).await;
        match answer {
            Ok(a) if a.status == 200 => {
                let Some(number) = a.body["ticket"]["number"].as_str().map(str::to_owned) else {
                    stats.error(format!("call-next 200 without a ticket: {}", a.body));
                    continue;
                };
                shared.book.insert(&counter, &number, sent);
                shared
                    .called_by
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(number.clone(), counter.clone());
                shared.calls.fetch_add(1, Ordering::Relaxed);
                stats.called.push(number);
                for action in ["start", "complete"] {
                    tokio::time::sleep(pause).await;
                    match api.post(&path(action), token, None).await {
                        Ok(a) if a.status == 200 => {}
                        Ok(a) => stats.error(format!("{action}: {} {}", a.status, a.body)),
                        Err(e) => stats.error(format!("{action}: {e}")),
                    }
                }
                tokio::time::sleep(pause).await;
            }
            Ok(a) if a.status == 204 => {
                stats.idle += 1;
                tokio::time::sleep(idle_pause).await;
            }
            Ok(a) if a.status == 409 && a.code() == "counter_busy" => {
                // A ticket left from an earlier run: finish it.
                for action in ["start", "complete"] {
                    let _ = api.post(&path(action), token, None).await;
                }
            }
            Ok(a) if a.status == 409 && a.code() == "counter_not_open" => {
                progress!("counter {counter} is not open; opening it");
                let _ = api.post(&path("open"), token, None).await;
                tokio::time::sleep(idle_pause).await;
            }
            Ok(a) => {
                stats.error(format!("call-next: {} {}", a.status, a.body));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                stats.error(format!("call-next: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    stats
}
