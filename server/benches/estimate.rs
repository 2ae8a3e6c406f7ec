//! On the busiest moment of a simulated moving-season day (the most residents waiting at once):
//! the wait forecast the site actor runs after every append, and a snapshot's round trip
//! (take, encode, decode, restore: what a start from a snapshot does), each against copying that
//! state once as the baseline. Compare as ratios.
//!
//! cargo bench -p madoguchi-server --bench estimate

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use madoguchi::config::Config;
use madoguchi::core::estimate::forecast;
use madoguchi::core::{Learner, SiteSnapshot, SiteState, TicketId, Timestamp};
use madoguchi::sim::{Observer, Scenario, Sim};

/// Keeps the state at the issue with the most residents waiting.
#[derive(Default)]
struct Busiest {
    best: Option<(usize, SiteState, Learner, Timestamp)>,
}

impl Observer for Busiest {
    fn issued(&mut self, state: &SiteState, learner: &Learner, _: &TicketId, now: Timestamp) {
        let waiting: usize = state.waiting.values().map(|l| l.len()).sum();
        if self.best.as_ref().is_none_or(|(n, ..)| waiting > *n) {
            self.best = Some((waiting, state.clone(), learner.clone(), now));
        }
    }
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let config = Config::load(&root.join("config/demo.toml")).expect("the demo configuration");
    let scenario = Scenario::load(&root.join("config/scenarios/moving-season.toml"))
        .expect("the moving-season scenario");
    let mut sim = Sim::new(&config.sites[0], scenario, 1).expect("a simulator");
    let mut busiest = Busiest::default();
    for day in madoguchi::sim::weekdays(chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(), 2) {
        sim.day(day, &mut busiest);
    }
    let (waiting, state, learner, now) = busiest.best.expect("someone waited");
    eprintln!("{waiting} residents waiting");
    let mut group = c.benchmark_group("estimate");
    group.bench_function("baseline: clone the state", |b| b.iter(|| state.clone()));
    group.bench_function(format!("forecast, {waiting} waiting"), |b| {
        b.iter(|| forecast(&state, &learner, now, 7))
    });
    group.bench_function("snapshot round trip", |b| {
        b.iter(|| {
            let snapshot = SiteSnapshot::take(&state, Some(now));
            let json = serde_json::to_vec(&snapshot).expect("a snapshot encodes");
            let back: SiteSnapshot = serde_json::from_slice(&json).expect("and decodes");
            back.restore(state.config.clone()).expect("and fits")
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
