//! Snapshots of a site's state, so a start replays only the events after the newest one.
//!
//! A snapshot stands for a replay of the log up to its `seq` only if the same code would fold
//! the same events into the same state: it carries the snapshot format (bumped with any change
//! to the events, the state or `apply`) and a fingerprint of the parts of the site configuration
//! the state starts from. Either differing means a full replay.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::SiteConfig;
use super::state::{Counter, IdMap, RecentCall, SiteState, Ticket, WaitKey};
use super::{
    CounterId, CounterState, DispenserId, PrinterId, PrinterState, Profile, QueueId, ReceptionMode,
    SiteId, Target, TicketId, TicketNumber, Timestamp,
};

/// The snapshot format. Bump it whenever `Event`, `SiteState` or `SiteState::apply` change in a
/// way that makes a snapshot taken by the previous version differ from a replay by this one:
/// every older snapshot is then ignored, and the next start replays the whole log once.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// A site's state after the event `seq`, without its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteSnapshot {
    pub format: u32,
    /// [`config_fingerprint`] of the configuration the state was folded under.
    pub config_fingerprint: String,
    /// The last event folded into the state.
    pub seq: u64,
    /// That event's time (the site actor keeps event times from going back).
    pub last_at: Option<Timestamp>,
    pub state: StateData,
}

/// The fields of [`SiteState`] but its configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateData {
    day: Option<NaiveDate>,
    next_value: BTreeMap<QueueId, u32>,
    tickets: IdMap<TicketId, Ticket>,
    by_number: IdMap<TicketNumber, TicketId>,
    by_token: IdMap<String, TicketId>,
    #[serde(with = "pairs")]
    idempotency: imbl::HashMap<(Option<DispenserId>, String), TicketId>,
    #[serde(with = "pairs")]
    waiting: BTreeMap<Target, imbl::OrdSet<WaitKey>>,
    counters: Vec<Counter>,
    recent_calls: VecDeque<RecentCall>,
    printers: BTreeMap<PrinterId, (PrinterState, Option<Timestamp>)>,
    /// Absent from snapshots taken before reception hours (no such event then).
    #[serde(default)]
    reception: BTreeMap<QueueId, (ReceptionMode, Timestamp)>,
    /// Absent from snapshots taken before reservations.
    #[serde(default)]
    reservations: imbl::OrdMap<String, super::reserve::Reservation>,
    #[serde(default, with = "pairs")]
    slot_capacity: BTreeMap<(QueueId, Timestamp), u32>,
    #[serde(default)]
    checked_in: imbl::OrdMap<String, TicketId>,
}

/// Why a snapshot cannot stand for a replay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotMismatch {
    #[error("snapshot format {found}, this version reads {expected}")]
    Format { found: u32, expected: u32 },
    #[error("the site's counters or printers changed since the snapshot was taken")]
    Config,
}

impl SiteSnapshot {
    /// The state as it is now; `last_at` is the time of its last event.
    pub fn take(state: &SiteState, last_at: Option<Timestamp>) -> SiteSnapshot {
        // Destructured in full, so a field added to the state cannot be forgotten here.
        let SiteState {
            config,
            seq,
            day,
            next_value,
            tickets,
            by_number,
            by_token,
            idempotency,
            waiting,
            counters,
            recent_calls,
            printers,
            reception,
            reservations,
            slot_capacity,
            checked_in,
            // Counted from `reservations` and the tickets on restore.
            booked: _,
            held: _,
            notices_pending: _,
            // A cache of the wait estimates: recomputed after every event.
            estimates: _,
            // The reception at the clock's time: recomputed by the owner.
            reception_now: _,
        } = state;
        SiteSnapshot {
            format: SNAPSHOT_FORMAT,
            config_fingerprint: config_fingerprint(config),
            seq: *seq,
            last_at,
            state: StateData {
                day: *day,
                next_value: next_value.clone(),
                tickets: tickets.clone(),
                by_number: by_number.clone(),
                by_token: by_token.clone(),
                idempotency: idempotency.clone(),
                waiting: waiting.clone(),
                counters: counters.clone(),
                recent_calls: recent_calls.clone(),
                printers: printers.clone(),
                reception: reception.clone(),
                reservations: reservations.clone(),
                slot_capacity: slot_capacity.clone(),
                checked_in: checked_in.clone(),
            },
        }
    }

    /// Whether this snapshot stands for a replay under `config` by this version.
    pub fn check(&self, config: &SiteConfig) -> Result<(), SnapshotMismatch> {
        if self.format != SNAPSHOT_FORMAT {
            return Err(SnapshotMismatch::Format {
                found: self.format,
                expected: SNAPSHOT_FORMAT,
            });
        }
        if self.config_fingerprint != config_fingerprint(config) {
            return Err(SnapshotMismatch::Config);
        }
        Ok(())
    }

    /// The state the snapshot holds, under `config`: the state a replay of the log up to `seq`
    /// gives, if [`check`](Self::check) passes.
    pub fn restore(self, config: Arc<SiteConfig>) -> Result<SiteState, SnapshotMismatch> {
        self.check(&config)?;
        let StateData {
            day,
            next_value,
            tickets,
            by_number,
            by_token,
            idempotency,
            waiting,
            counters,
            recent_calls,
            printers,
            reception,
            reservations,
            slot_capacity,
            checked_in,
        } = self.state;
        let held = tickets
            .values()
            .filter_map(|t| t.held_until.map(|until| (until, t.id.clone())))
            .collect();
        let notices_pending = tickets
            .values()
            .filter(|t| {
                t.notice.as_ref().is_some_and(|n| !n.sent)
                    && t.status == super::TicketStatus::Waiting
                    && t.steps.iter().all(|s| s.called_at.is_none())
            })
            .map(|t| t.id.clone())
            .collect();
        let mut booked = imbl::OrdMap::new();
        for r in reservations.values() {
            *booked.entry((r.queue.clone(), r.slot_start)).or_insert(0) += 1;
        }
        Ok(SiteState {
            config,
            seq: self.seq,
            day,
            next_value,
            tickets,
            by_number,
            by_token,
            idempotency,
            waiting,
            counters,
            recent_calls,
            printers,
            estimates: Default::default(),
            reception,
            reception_now: Default::default(),
            reservations,
            booked,
            slot_capacity,
            checked_in,
            held,
            notices_pending,
        })
    }
}

/// A hash of what [`SiteState::new`] takes from the configuration and what `apply` looks up in
/// it: the site, its counters in order with their initial state and profile, and the printer
/// agents of its dispensers. Names, queues, procedures and screens do not change the state, so
/// editing them keeps the snapshots.
pub fn config_fingerprint(config: &SiteConfig) -> String {
    #[derive(Serialize)]
    struct Relevant<'a> {
        site: &'a SiteId,
        counters: Vec<(&'a CounterId, CounterState, &'a Profile)>,
        printers: BTreeSet<&'a PrinterId>,
    }
    let relevant = Relevant {
        site: &config.id,
        counters: config
            .counters
            .iter()
            .map(|c| (&c.id, c.state, &c.profile))
            .collect(),
        printers: config
            .dispensers
            .iter()
            .filter_map(|d| d.printer_agent.as_ref())
            .collect(),
    };
    let json = serde_json::to_vec(&relevant).expect("the configuration serializes");
    Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Maps whose keys are not strings (tuples, enums), as JSON arrays of `[key, value]` pairs.
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<'a, M, K, V, S>(map: &'a M, s: S) -> Result<S::Ok, S::Error>
    where
        &'a M: IntoIterator<Item = (&'a K, &'a V)>,
        K: Serialize + 'a,
        V: Serialize + 'a,
        S: Serializer,
    {
        s.collect_seq(map)
    }

    pub(super) fn deserialize<'de, M, K, V, D>(d: D) -> Result<M, D::Error>
    where
        M: FromIterator<(K, V)>,
        K: Deserialize<'de>,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn demo() -> SiteConfig {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let config = Config::parse(&path, &text, &|_| None).unwrap();
        (*config.sites[0]).clone()
    }

    #[test]
    fn the_fingerprint_follows_counters_and_printers_only() {
        let base = demo();
        let fp = config_fingerprint(&base);
        assert_eq!(fp.len(), 64);
        assert_eq!(fp, config_fingerprint(&base.clone()), "deterministic");

        let mut renamed = base.clone();
        renamed.name.en = "Renamed".into();
        renamed.counters[0].name.en = "Window 1".into();
        renamed.procedures.pop();
        renamed.public_url = "https://example.org".into();
        assert_eq!(
            config_fingerprint(&renamed),
            fp,
            "names and catalog do not count"
        );

        let mut opened = base.clone();
        let last = opened.counters.len() - 1;
        opened.counters[last].state = CounterState::Open;
        assert_ne!(
            config_fingerprint(&opened),
            fp,
            "a counter's initial state counts"
        );

        let mut fewer = base.clone();
        fewer.counters.pop();
        assert_ne!(config_fingerprint(&fewer), fp, "the counters count");

        let mut reordered = base.clone();
        reordered.counters.swap(0, 1);
        assert_ne!(config_fingerprint(&reordered), fp, "their order counts");

        let mut profile = base.clone();
        profile.counters[0].profile.queues.reverse();
        profile.counters[0]
            .profile
            .queues
            .push("welfare".parse().unwrap());
        assert_ne!(config_fingerprint(&profile), fp, "profiles count");

        let mut printer = base.clone();
        printer.dispensers[0].printer_agent = Some("agent-9".parse().unwrap());
        assert_ne!(config_fingerprint(&printer), fp, "printer agents count");
    }

    #[test]
    fn a_snapshot_is_refused_under_another_format_or_configuration() {
        let config = Arc::new(demo());
        let state = SiteState::new(config.clone());
        let snapshot = SiteSnapshot::take(&state, None);
        assert_eq!(snapshot.check(&config), Ok(()));
        let mut other = (*config).clone();
        other.counters.pop();
        assert_eq!(snapshot.check(&other), Err(SnapshotMismatch::Config));
        let mut old = snapshot.clone();
        old.format = SNAPSHOT_FORMAT + 1;
        assert!(matches!(
            old.restore(config.clone()),
            Err(SnapshotMismatch::Format { .. })
        ));
        assert!(snapshot.restore(config).unwrap() == state);
    }
}
