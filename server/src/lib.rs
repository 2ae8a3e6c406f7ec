//! madoguchi: queue ticketing and wait-time display for a city's ward offices.
//!
//! Layout, following the flow of data:
//! - [`core`]: the pure state machine (commands → events → state), no I/O, time passed in;
//! - [`config`]: the city's catalog and sites, validated as a whole;
//! - [`log`]: the event log trait and its backends (SQLite embedded), and snapshots beside it;
//! - [`projection`]: visit records (stay time) and KPI figures, in the SQLite file;
//! - [`site`]: one actor task per site that owns its state and applies commands in order;
//! - [`http`]: the HTTP API and the live WebSocket feed;
//! - [`net`]: connections from a public network: caps, timeouts, rate limits;
//! - [`metrics`]: Prometheus metrics;
//! - [`generate`]: a realistic event log from simulated days, for measurements.

pub mod calendar;
pub mod clock;
pub mod config;
pub mod core;
pub mod generate;
pub mod hooks;
pub mod http;
pub mod kpi;
pub mod log;
pub mod maintenance;
pub mod metrics;
pub mod net;
pub mod notices;
pub mod pace;
pub mod printers;
pub mod projection;
pub mod projector;
pub mod server;
pub mod sim;
pub mod site;
pub mod suggest;
