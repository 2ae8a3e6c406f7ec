//! The day simulator and the wait predictors: determinism, agreement with the core's records,
//! the stationary M/M/s check, and the madoguchi predictor beating the baselines.

use std::path::Path;

use madoguchi::config::Config;
use madoguchi::core::model::SiteConfig;
use madoguchi::sim::bench::{mms_check, score};
use madoguchi::sim::{weekdays, Scenario, Sim};

fn demo_site() -> SiteConfig {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
    let config = Config::load(&path).expect("the demo configuration loads");
    (*config.sites[0]).clone()
}

fn scenario(name: &str) -> Scenario {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/scenarios")
        .join(format!("{name}.toml"));
    Scenario::load(&path).expect("the scenario loads")
}

fn first() -> chrono::NaiveDate {
    chrono::NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
}

#[test]
fn the_shipped_scenarios_load_and_fill_a_day() {
    for name in ["normal-day", "moving-season"] {
        let mut sim = Sim::new(&demo_site(), scenario(name), 1).unwrap();
        let day = sim.day(first(), &mut ());
        assert!(day.arrivals > 100, "{name}: {} arrivals", day.arrivals);
        assert!(
            day.visits.len() as u64 > day.arrivals / 2,
            "{name}: most visits end"
        );
    }
}

#[test]
fn the_simulator_is_deterministic_for_a_seed() {
    let run = |seed| {
        let mut sim = Sim::new(&demo_site(), scenario("normal-day"), seed).unwrap();
        weekdays(first(), 2)
            .into_iter()
            .map(|d| sim.day(d, &mut ()))
            .map(|r| (r.arrivals, r.events, r.visits))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8), "another seed gives another day");
}

#[test]
fn the_stays_the_simulator_reports_are_those_the_core_records() {
    let mut sim = Sim::new(&demo_site(), scenario("moving-season"), 3).unwrap();
    let day = sim.day(first(), &mut ());
    assert!(!day.visits.is_empty());
    for visit in &day.visits {
        let record = day
            .records
            .iter()
            .find(|r| r.ticket == visit.ticket)
            .expect("a record for every visit that ended");
        let stay = (visit.departed - visit.arrived).num_milliseconds() as f64 / 1000.0;
        assert!(
            (record.stay_s - stay).abs() < 0.002,
            "{}: core {} s, simulator {stay} s",
            visit.ticket,
            record.stay_s
        );
        assert!(record.stay_s >= 0.0);
    }
}

/// QL on M/M/s: for a customer who finds all s servers busy with n ahead, the wait is a sum of
/// n + 1 exponentials of rate sμ, so RASE = E[n+1]⁻¹ = 1 − ρ. The tolerance follows from the
/// samples: three standard errors, by a jackknife over the days (days are independent;
/// customers within a day are not).
#[test]
fn ql_on_a_stationary_mms_queue_has_the_rase_theory_gives() {
    let rho = 0.9;
    let check = mms_check(10, rho, 80, 5).unwrap();
    let tolerance = 3.0 * check.standard_error();
    assert!(check.customers > 30_000, "{} customers", check.customers);
    assert!(
        tolerance < 0.3 * (1.0 - rho),
        "enough days for a meaningful check: ±{tolerance:.4}"
    );
    assert!(
        (check.rase_ql - (1.0 - rho)).abs() <= tolerance,
        "RASE {:.4}, theory {:.4}, tolerance {:.4} (3 standard errors over {} days)",
        check.rase_ql,
        1.0 - rho,
        tolerance,
        check.per_day.len()
    );
}

#[test]
fn the_madoguchi_predictor_beats_the_baselines_on_moving_season() {
    let (scores, waits) =
        score(&demo_site(), scenario("moving-season"), 4, 11, &mut |_| {}).unwrap();
    assert!(waits.len() > 500);
    let mae = |p: &str| scores[p].mae_s;
    let best_classic = ["naive", "ql", "les", "hol"]
        .iter()
        .map(|p| mae(p))
        .fold(f64::INFINITY, f64::min);
    assert!(
        mae("madoguchi") <= 0.7 * best_classic,
        "madoguchi {:.0} s vs best classic {best_classic:.0} s",
        mae("madoguchi")
    );
    assert!(
        mae("madoguchi") <= 0.85 * mae("ql_staffed"),
        "madoguchi {:.0} s vs ql_staffed {:.0} s",
        mae("madoguchi"),
        mae("ql_staffed")
    );
}

#[test]
fn the_what_if_forecast_of_the_next_hour_beats_persistence() {
    let check = madoguchi::sim::bench::what_if_check(&demo_site(), scenario("moving-season"), 4, 3)
        .unwrap();
    assert!(check.forecasts > 50, "{check:?}");
    assert!(
        check.mae_s < 0.85 * check.persistence_mae_s,
        "what-if MAE {:.0} s vs persistence {:.0} s",
        check.mae_s,
        check.persistence_mae_s
    );
}

/// Mean stay in minutes of the moving-in visits of `days` simulated moving-season days with
/// `share` of them booked: (all, booked, walk-in, share actually booked).
fn moving_in_stays(share: f64, days: u32) -> (f64, f64, f64, f64) {
    let mut sim = Sim::new(&demo_site(), scenario("moving-season"), 11).unwrap();
    sim.booked_share = share;
    let (mut all, mut booked, mut walk_in) = (Vec::new(), Vec::new(), Vec::new());
    for d in weekdays(first(), days) {
        let day = sim.day(d, &mut ());
        let moving_in: std::collections::HashSet<_> = day
            .records
            .iter()
            .filter(|r| {
                r.life_event
                    .as_ref()
                    .is_some_and(|l| l.as_str() == "moving_in")
            })
            .map(|r| r.ticket.clone())
            .collect();
        for v in day.visits.iter().filter(|v| moving_in.contains(&v.ticket)) {
            let stay = (v.departed - v.arrived).num_seconds() as f64 / 60.0;
            all.push(stay);
            if sim.booked_tickets.contains(&v.ticket) {
                booked.push(stay);
            } else {
                walk_in.push(stay);
            }
        }
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    (
        mean(&all),
        mean(&booked),
        mean(&walk_in),
        booked.len() as f64 / all.len().max(1) as f64,
    )
}

#[test]
fn booked_moving_in_visits_stay_shorter_than_walk_ins_and_the_table_of_shares() {
    let mut table = Vec::new();
    for share in [0.0, 0.3, 0.6] {
        let (all, booked, walk_in, actual) = moving_in_stays(share, 10);
        table.push((share, all, booked, walk_in, actual));
        eprintln!(
            "booked {:>3.0} % (actual {:>4.1} %): moving-in mean stay {all:5.1} min, booked {booked:5.1}, walk-in {walk_in:5.1}",
            share * 100.0,
            actual * 100.0
        );
    }
    assert_eq!(table[0].4, 0.0, "nobody books at 0 %");
    for &(share, _, booked, walk_in, actual) in &table[1..] {
        assert!(
            actual > share * 0.5,
            "most who want to book find a slot: {actual}"
        );
        assert!(
            booked < walk_in,
            "at {share}: a booked visit is served near its slot, shorter than a walk-in's ({booked} vs {walk_in})"
        );
    }
}
