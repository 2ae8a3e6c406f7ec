//! The run's figures and its correctness counts.

use std::fmt::Write as _;

use serde::Serialize;

/// Everything one run measured. Latencies in milliseconds; `None` (JSON `null`) where nothing was
/// measured. The counts after `violations` are zero in a correct run.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Report {
    /// Lobby sockets open for the run.
    pub(crate) sockets: usize,
    /// Tickets acknowledged (2xx): the phones' and the dispensers'.
    pub(crate) issued: u64,
    /// Acknowledged dispenser issues per second over the issuing phase.
    pub(crate) issue_per_s: f64,
    /// Dispenser issue latency, request sent to answer read.
    pub(crate) issue_p50_ms: Option<f64>,
    pub(crate) issue_p99_ms: Option<f64>,
    /// From sending a counter's `call-next` to each lobby socket holding that `ticket_called`
    /// event, over all (call, socket) pairs.
    pub(crate) call_to_screen_p50_ms: Option<f64>,
    pub(crate) call_to_screen_p99_ms: Option<f64>,
    /// The bare broadcast baseline: send to each socket's receipt of the call messages, with
    /// madoguchi's own call event (its seq replaced), the same number of sockets, on the feed's
    /// schedule as socket 0 saw it (its first `--baseline-seconds`).
    pub(crate) baseline_p99_ms: Option<f64>,
    /// `call_to_screen_p99_ms / baseline_p99_ms`.
    pub(crate) ratio_p99: Option<f64>,
    /// Peak resident memory (VmHWM) of the server (needs --server-pid) and of the baseline, MiB.
    pub(crate) rss_mb: Option<f64>,
    pub(crate) baseline_rss_mb: Option<f64>,
    /// CPU seconds over the load phase: the server's (needs --server-pid) and the loadgen's own;
    /// and the baseline server's over its sending phase.
    pub(crate) server_cpu_s: Option<f64>,
    pub(crate) loadgen_cpu_s: Option<f64>,
    pub(crate) baseline_cpu_s: Option<f64>,

    // More of the run.
    pub(crate) sockets_requested: usize,
    pub(crate) phones: usize,
    pub(crate) phones_requested: usize,
    pub(crate) counters: usize,
    pub(crate) duration_s: f64,
    pub(crate) issued_dispensers: u64,
    pub(crate) issue_rate_asked: f64,
    /// Closed-loop dispenser clients (0: open loop at `issue_rate_asked`).
    pub(crate) issuers: usize,
    /// Calls made by the counter loops.
    pub(crate) calls: u64,
    /// Phone tickets called during the run.
    pub(crate) phones_called: usize,
    /// Feed events during the run (seq at the end less seq at the start).
    pub(crate) events: u64,
    pub(crate) events_per_s: f64,
    /// Size in bytes of a `ticket_called` message on the lobby feed.
    pub(crate) call_event_bytes: usize,
    /// (call, socket) pairs measured.
    pub(crate) call_screen_pairs: u64,
    /// From sending `call-next` to the phone channel showing the ticket called.
    pub(crate) phone_call_p50_ms: Option<f64>,
    pub(crate) phone_call_p99_ms: Option<f64>,
    pub(crate) baseline_p50_ms: Option<f64>,
    pub(crate) baseline_sockets: usize,
    pub(crate) baseline_messages: usize,
    /// Baseline (message, socket) pairs that never arrived.
    pub(crate) baseline_missing: u64,
    /// Snapshots the server sent after the first (a socket fell behind and was caught up, or
    /// asked after a gap): allowed, but the calls they covered were not timed.
    pub(crate) lobby_resnapshots: u64,
    /// `call-next` answers 204 (nobody waiting).
    pub(crate) counter_idle: u64,

    /// Sum of the counts below.
    pub(crate) violations: u64,
    /// An event whose seq skipped ahead of the one held, without a snapshot.
    pub(crate) lobby_gaps: u64,
    /// A seq at or below one already held.
    pub(crate) lobby_out_of_order: u64,
    /// Unreadable messages, or a feed that did not start with a snapshot.
    pub(crate) lobby_bad_messages: u64,
    /// Lobby sockets that failed to open (429 included).
    pub(crate) lobby_connect_errors: u64,
    /// Lobby sockets the server closed, or that failed, during the run.
    pub(crate) lobby_dropped: u64,
    /// Open lobby sockets that never reached the site's final seq.
    pub(crate) lobby_behind: u64,
    /// (call, socket) pairs never shown, on sockets that received no further snapshot.
    pub(crate) screen_missing: u64,
    /// Phone tickets that were called but whose open channel never showed them called at that
    /// counter.
    pub(crate) phone_missing: u64,
    /// Open phone channels whose last message differs from `GET /api/v1/tickets/{token}` at the end.
    pub(crate) phone_stale: u64,
    pub(crate) phone_connect_errors: u64,
    pub(crate) phone_dropped: u64,
    pub(crate) phone_bad_messages: u64,
    /// Issues not acknowledged with 2xx (phones' and dispensers').
    pub(crate) issue_errors: u64,
    /// Counter answers other than the expected ones.
    pub(crate) counter_errors: u64,
}

impl Report {
    /// Adds up the violation counts into `violations`.
    pub(crate) fn tally(&mut self) {
        self.violations = self.lobby_gaps
            + self.lobby_out_of_order
            + self.lobby_bad_messages
            + self.lobby_connect_errors
            + self.lobby_dropped
            + self.lobby_behind
            + self.screen_missing
            + self.phone_missing
            + self.phone_stale
            + self.phone_connect_errors
            + self.phone_dropped
            + self.phone_bad_messages
            + self.issue_errors
            + self.counter_errors;
    }

    pub(crate) fn violations(&self) -> u64 {
        self.violations
    }

    /// A readable summary.
    pub(crate) fn human(&self) -> String {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} ms"));
        let mb = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1} MiB"));
        let mut s = String::new();
        let _ = writeln!(
            s,
            "madoguchi load: {} lobby sockets, {} phones, {} counters, {:.1} s",
            self.sockets, self.phones, self.counters, self.duration_s
        );
        let _ = writeln!(
            s,
            "  issue         {} acknowledged ({} by dispensers at {:.1}/s, {})  p50 {}  p99 {}",
            self.issued,
            self.issued_dispensers,
            self.issue_per_s,
            if self.issuers > 0 {
                format!("{} clients back to back", self.issuers)
            } else {
                format!("asked {:.1}/s", self.issue_rate_asked)
            },
            ms(self.issue_p50_ms),
            ms(self.issue_p99_ms)
        );
        let _ = writeln!(
            s,
            "  calls         {} ({} phone tickets), {} feed events ({:.1}/s), call event {} bytes",
            self.calls, self.phones_called, self.events, self.events_per_s, self.call_event_bytes
        );
        let _ = writeln!(
            s,
            "  call→screen   p50 {}  p99 {}  over {} (call, socket) pairs",
            ms(self.call_to_screen_p50_ms),
            ms(self.call_to_screen_p99_ms),
            self.call_screen_pairs
        );
        let _ = writeln!(
            s,
            "  call→phone    p50 {}  p99 {}",
            ms(self.phone_call_p50_ms),
            ms(self.phone_call_p99_ms)
        );
        let _ = writeln!(
            s,
            "  baseline      p50 {}  p99 {}  ({} sockets, {} messages); p99 ratio {}",
            ms(self.baseline_p50_ms),
            ms(self.baseline_p99_ms),
            self.baseline_sockets,
            self.baseline_messages,
            self.ratio_p99
                .map_or("-".to_owned(), |r| format!("{r:.2}×"))
        );
        let _ = writeln!(
            s,
            "  memory (peak) server {}, baseline {}",
            mb(self.rss_mb),
            mb(self.baseline_rss_mb)
        );
        let cpu = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2} s"));
        let _ = writeln!(
            s,
            "  cpu           server {} and loadgen {} over the load; baseline server {}",
            cpu(self.server_cpu_s),
            cpu(self.loadgen_cpu_s),
            cpu(self.baseline_cpu_s)
        );
        let _ = writeln!(
            s,
            "  correctness   {} violations: lobby gaps {}, out of order {}, bad {}, connect errors {}, dropped {}, behind {}, calls not shown {}; phones missing the call {}, stale {}, connect errors {}, dropped {}, bad {}; issue errors {}; counter errors {} (resnapshots {}, allowed)",
            self.violations,
            self.lobby_gaps,
            self.lobby_out_of_order,
            self.lobby_bad_messages,
            self.lobby_connect_errors,
            self.lobby_dropped,
            self.lobby_behind,
            self.screen_missing,
            self.phone_missing,
            self.phone_stale,
            self.phone_connect_errors,
            self.phone_dropped,
            self.phone_bad_messages,
            self.issue_errors,
            self.counter_errors,
            self.lobby_resnapshots
        );
        s
    }
}

/// A `kB` field of /proc/PID/status (`VmHWM`, `VmRSS`).
pub(crate) fn vm_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// KiB to MiB, one decimal.
pub(crate) fn mib(kb: u64) -> f64 {
    (kb as f64 / 1024.0 * 10.0).round() / 10.0
}

/// CPU seconds (user + system) a process has used so far, from /proc/PID/stat (`self` for this
/// one); Linux reports them in units of 1/100 s.
pub(crate) fn cpu_s(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds used between two readings.
pub(crate) fn cpu_between(before: Option<f64>, after: Option<f64>) -> Option<f64> {
    Some(crate::stats::round3(after? - before?))
}
