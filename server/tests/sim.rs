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
