//! Prometheus metrics. Labels are sites, queues, counters and life events, never ticket numbers
//! or tokens.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

use crate::core::{CounterState, PrinterState, SiteState, Target, TicketStatus, VisitRecord};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub tickets_issued: IntCounterVec,
    pub calls: IntCounterVec,
    pub visits_ended: IntCounterVec,
    pub waiting: IntGaugeVec,
    pub counters_open: IntGaugeVec,
    pub stay: HistogramVec,
    pub wait: HistogramVec,
    pub service: HistogramVec,
    pub http_requests: HistogramVec,
    pub live_clients: IntGaugeVec,
    pub log_conflicts: IntCounterVec,
    pub group_commit: HistogramVec,
    pub printer_state: IntGaugeVec,
    pub print_jobs: IntCounterVec,
    pub http_connections: IntGauge,
    pub http_in_flight: IntGaugeVec,
    pub live_closed: IntCounterVec,
    pub rate_limited: IntCounterVec,
    pub ticket_live_clients: IntGaugeVec,
    pub exports_dropped: IntCounter,
    pub site_restarts: IntCounterVec,
    pub clock_skew: IntGauge,
    pub webhook_deliveries: IntCounterVec,
    pub notice_emails: IntCounterVec,
}

/// Buckets for times measured in minutes to hours: 1 min … 4 h.
const VISIT_BUCKETS: [f64; 12] = [
    60.0, 300.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0, 4740.0, 5940.0, 7140.0, 14400.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_registry(Registry::new())
    }

    /// Metrics of one of several server instances sharing a store: every series carries
    /// `server="<name>"`, and the counters count what this instance did (the gauges show the
    /// site as this instance sees it, the same on every instance).
    pub fn for_server(name: &str) -> Self {
        let labels = std::collections::HashMap::from([("server".to_owned(), name.to_owned())]);
        Self::with_registry(
            Registry::new_custom(None, Some(labels)).expect("a valid constant label"),
        )
    }

    fn with_registry(registry: Registry) -> Self {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        Self {
            tickets_issued: counter(
                "madoguchi_tickets_issued_total",
                "Tickets issued.",
                &["site", "queue"],
            ),
            calls: counter(
                "madoguchi_calls_total",
                "Calls of a ticket to a counter, recalls included.",
                &["site", "counter"],
            ),
            visits_ended: counter(
                "madoguchi_visits_ended_total",
                "Visits that ended, by outcome (done, no_show, cancelled).",
                &["site", "outcome"],
            ),
            waiting: gauge(
                "madoguchi_waiting_tickets",
                "Tickets waiting in a queue.",
                &["site", "queue"],
            ),
            counters_open: gauge(
                "madoguchi_counters_open",
                "Counters currently open.",
                &["site"],
            ),
            stay: histogram(
                "madoguchi_stay_seconds",
                "Stay time of completed visits, arrival to departure; queue is the first queue.",
                &["site", "life_event", "queue"],
                VISIT_BUCKETS.to_vec(),
            ),
            wait: histogram(
                "madoguchi_wait_seconds",
                "Waiting time of each step of completed visits, by the step's queue.",
                &["site", "life_event", "queue"],
                VISIT_BUCKETS.to_vec(),
            ),
            service: histogram(
                "madoguchi_service_seconds",
                "Service time of each step of completed visits, by the step's queue.",
                &["site", "life_event", "queue"],
                VISIT_BUCKETS.to_vec(),
            ),
            http_requests: histogram(
                "madoguchi_http_request_duration_seconds",
                "HTTP request duration.",
                &["method", "route", "status"],
                prometheus::DEFAULT_BUCKETS.to_vec(),
            ),
            live_clients: gauge(
                "madoguchi_live_clients",
                "Connected live WebSocket clients.",
                &["site"],
            ),
            log_conflicts: counter(
                "madoguchi_event_log_conflicts_total",
                "Appends refused because another writer appended first.",
                &["site"],
            ),
            group_commit: histogram(
                "madoguchi_group_commit_commands",
                "Commands decided together and appended in one transaction (group commit).",
                &["site"],
                vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
            ),
            printer_state: gauge(
                "madoguchi_printer_state",
                "1 for the state a printer is in, 0 for the others.",
                &["site", "printer", "state"],
            ),
            print_jobs: counter(
                "madoguchi_print_jobs_total",
                "Print jobs finished by printer agents, by outcome (printed, expired, uncertain).",
                &["printer", "outcome"],
            ),
            http_connections: {
                let g = IntGauge::new("madoguchi_http_connections", "Open TCP connections.")
                    .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            http_in_flight: gauge(
                "madoguchi_http_requests_in_flight",
                "Requests being answered, by route pattern.",
                &["route"],
            ),
            live_closed: counter(
                "madoguchi_live_closed_total",
                "WebSockets the server closed: stalled (a send blocked too long, 1013), too_big (1009).",
                &["feed", "reason"],
            ),
            rate_limited: counter(
                "madoguchi_rate_limited_total",
                "Requests refused with 429, by route pattern.",
                &["route"],
            ),
            ticket_live_clients: gauge(
                "madoguchi_ticket_live_clients",
                "Connected phone pages following one ticket.",
                &["site"],
            ),
            site_restarts: counter(
                "madoguchi_site_restarts_total",
                "Site actors rebuilt from the event log after a failure.",
                &["site"],
            ),
            webhook_deliveries: counter(
                "madoguchi_webhook_deliveries_total",
                "Webhook tries by outcome: delivered (2xx), failed (retried later), dead (given up: a dead letter on the floor board).",
                &["site", "hook", "outcome"],
            ),
            notice_emails: counter(
                "madoguchi_notice_emails_total",
                "Near-turn notices and booking reminders by e-mail, by outcome (sent, failed).",
                &["site", "outcome"],
            ),
            exports_dropped: {
                let c = IntCounter::new(
                    "madoguchi_exports_dropped_total",
                    "CSV exports dropped because their client stopped reading (`[limits] export_stall_s`).",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(c.clone()))
                    .expect("unique metric");
                c
            },
            clock_skew: {
                let g = IntGauge::new(
                    "madoguchi_clock_skew_seconds",
                    "Wall clock minus the server's time while a clock jump is being ignored; 0 normally.",
                )
                .expect("valid metric");
                registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            },
            registry,
        }
    }

    pub fn observe_printer(&self, site: &str, printer: &str, state: PrinterState) {
        for s in PrinterState::ALL {
            self.printer_state
                .with_label_values(&[site, printer, s.as_str()])
                .set(i64::from(s == state));
        }
    }

    /// Sets the gauges that follow the board.
    /// The site's gauges (people waiting per queue, counters open), read from its state: counts
    /// only, so it costs next to nothing after every append (no board is built for it).
    pub fn observe_site(&self, state: &SiteState) {
        let site = state.config.id.as_str();
        for q in &state.config.queues {
            let waiting = state
                .waiting
                .get(&Target::Queue(q.id.clone()))
                .map_or(0, |l| l.len());
            self.waiting
                .with_label_values(&[site, q.id.as_str()])
                .set(waiting as i64);
        }
        let open = state
            .counters
            .iter()
            .filter(|c| c.state == CounterState::Open)
            .count();
        self.counters_open
            .with_label_values(&[site])
            .set(open as i64);
    }

    pub fn observe_visit(&self, v: &VisitRecord) {
        self.visits_ended
            .with_label_values(&[v.site.as_str(), v.outcome.as_str()])
            .inc();
        if v.outcome == TicketStatus::Done {
            let le = v.life_event.as_ref().map_or("none", |l| l.as_str());
            let queue = |t: &Target| match t {
                Target::Queue(q) => q.to_string(),
                Target::Counter(c) => format!("counter:{c}"),
            };
            let first = v
                .steps
                .first()
                .map(|s| queue(&s.target))
                .unwrap_or_default();
            self.stay
                .with_label_values(&[v.site.as_str(), le, first.as_str()])
                .observe(v.stay_s);
            for step in &v.steps {
                let q = queue(&step.target);
                let labels = [v.site.as_str(), le, q.as_str()];
                self.wait.with_label_values(&labels).observe(step.wait_s);
                self.service
                    .with_label_values(&labels)
                    .observe(step.service_s);
            }
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding does not fail");
        String::from_utf8(buf).expect("text format is UTF-8")
    }
}
