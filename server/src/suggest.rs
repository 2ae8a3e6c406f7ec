//! The floor board's suggestion: when a queue's forecast passes the floor alert threshold, the one
//! change (open a paused or closed counter that serves it, or add it to a counter's queues) that
//! cuts that queue's longest forecast wait most, with its effect. Computed in a task beside each
//! site, off the actor's path, every `suggest_every_s`; at most one suggestion per queue.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use utoipa::ToSchema;

use crate::core::estimate::{what_if, ForecastPoint};
use crate::core::{
    CounterId, CounterState, I18n, Learner, Profile, QueueId, SiteState, Target, Timestamp,
};
use crate::site::SiteHandle;

/// How far ahead a suggestion looks.
const HORIZON_S: f64 = 2.0 * 3600.0;
const STEP_S: f64 = 600.0;
/// A change must cut the longest wait by this share at least to be worth suggesting.
const WORTH: f64 = 0.9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Open a paused or closed counter that serves the queue.
    Open,
    /// Add the queue to a counter's queues (and open it).
    AddQueue,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Suggestion {
    pub queue: QueueId,
    pub counter: CounterId,
    pub kind: ChangeKind,
    /// The counter state to set.
    pub state: CounterState,
    /// The counter's queues and strategy with the change.
    pub profile: Profile,
    pub longest_wait_s_before: f64,
    pub longest_wait_s_after: f64,
    /// e.g. 「5番窓口を各種証明にも → 最長待ち 42分 → 18分」.
    pub text: I18n,
}

#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Suggestions {
    /// When they were computed (`null` before the first time).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub at: Option<Timestamp>,
    /// The seq of the state they were computed from.
    pub seq: Option<u64>,
    pub suggestions: Vec<Suggestion>,
}

/// The latest suggestions of each site, shared with the API.
pub type Board = Arc<std::sync::RwLock<Suggestions>>;

fn longest(points: &[ForecastPoint]) -> f64 {
    points.iter().map(|p| p.wait_s).fold(0.0, f64::max)
}

fn longest_by_queue(forecast: &[(Target, Vec<ForecastPoint>)]) -> HashMap<Target, f64> {
    forecast
        .iter()
        .map(|(t, points)| (t.clone(), longest(points)))
        .collect()
}

fn minutes(s: f64) -> u64 {
    (s / 60.0).round() as u64
}

/// The suggestions for `state` at `now`: for each queue whose longest forecast wait passes
/// `threshold_s`, the best single change, if one helps enough without pushing another queue over
/// the threshold.
pub fn suggest(
    state: &SiteState,
    learner: &Learner,
    now: Timestamp,
    threshold_s: f64,
) -> Vec<Suggestion> {
    let seed = state.seq;
    let none = HashMap::new();
    let forecast = |s: &SiteState| what_if(s, learner, now, HORIZON_S, STEP_S, &none, seed);
    let base = longest_by_queue(&forecast(state));
    let mut out: Vec<Suggestion> = Vec::new();
    for q in &state.config.queues {
        let target = Target::Queue(q.id.clone());
        let before = base.get(&target).copied().unwrap_or(0.0);
        if before <= threshold_s {
            continue;
        }
        let mut best: Option<(f64, Suggestion)> = None;
        for c in &state.counters {
            let serves = c.profile.queues.contains(&q.id);
            let (kind, profile) = match (serves, c.state) {
                (true, CounterState::Open) => continue,
                (true, _) => (ChangeKind::Open, c.profile.clone()),
                (false, _) => {
                    let mut profile = c.profile.clone();
                    profile.queues.push(q.id.clone());
                    (ChangeKind::AddQueue, profile)
                }
            };
            // One suggestion per counter across queues.
            if out.iter().any(|s| s.counter == c.id) {
                continue;
            }
            let mut changed = state.clone();
            if let Some(x) = changed.counters.iter_mut().find(|x| x.id == c.id) {
                x.state = CounterState::Open;
                x.profile = profile.clone();
            }
            let after = longest_by_queue(&forecast(&changed));
            let after_q = after.get(&target).copied().unwrap_or(0.0);
            // No other queue pushed over the threshold by it.
            let harms = after.iter().any(|(t, w)| {
                t != &target
                    && *w > threshold_s
                    && base.get(t).copied().unwrap_or(0.0) <= threshold_s
            });
            if after_q >= before * WORTH || harms {
                continue;
            }
            if best.as_ref().is_some_and(|(w, _)| *w <= after_q) {
                continue;
            }
            let name = state
                .config
                .counter(&c.id)
                .map(|cc| cc.name.clone())
                .unwrap_or_else(|| I18n {
                    ja: format!("{}番窓口", c.id),
                    en: format!("Counter {}", c.id),
                });
            let (b, a) = (minutes(before), minutes(after_q));
            let text = match kind {
                ChangeKind::Open => I18n {
                    ja: format!("{}を開ける → 最長待ち {b}分 → {a}分", name.ja),
                    en: format!("Open {} → longest wait {b} min → {a} min", name.en),
                },
                ChangeKind::AddQueue => I18n {
                    ja: format!("{}を{}にも → 最長待ち {b}分 → {a}分", name.ja, q.name.ja),
                    en: format!(
                        "{} also for {} → longest wait {b} min → {a} min",
                        name.en, q.name.en
                    ),
                },
            };
            best = Some((
                after_q,
                Suggestion {
                    queue: q.id.clone(),
                    counter: c.id.clone(),
                    kind,
                    state: CounterState::Open,
                    profile,
                    longest_wait_s_before: before,
                    longest_wait_s_after: after_q,
                    text,
                },
            ));
        }
        out.extend(best.map(|(_, s)| s));
    }
    out
}

/// Recomputes a site's suggestions every `suggest_every_s` until `stop` turns true.
pub async fn run(handle: SiteHandle, board: Board, mut stop: watch::Receiver<bool>) {
    let every = Duration::from_secs(u64::from(handle.config.screens.floor.suggest_every_s));
    let threshold_s = f64::from(handle.config.screens.floor.wait_alert_min) * 60.0;
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Ok(model) = handle.model().await else {
            continue;
        };
        let computed = tokio::task::spawn_blocking(move || {
            let suggestions = suggest(&model.state, &model.learner, model.now, threshold_s);
            Suggestions {
                at: Some(model.now),
                seq: Some(model.state.seq),
                suggestions,
            }
        })
        .await;
        match computed {
            Ok(s) => *board.write().unwrap_or_else(|p| p.into_inner()) = s,
            Err(e) => {
                tracing::warn!(site = %handle.config.id, error = %e, "could not compute the suggestions")
            }
        }
    }
}
