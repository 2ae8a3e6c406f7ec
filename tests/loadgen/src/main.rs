//! `madoguchi-loadgen`: drives a running madoguchi server the way a busy ward office does —
//! lobby screens on the live feed, residents' phones on their channels, counters calling,
//! dispensers issuing — and measures issue latency, call-to-screen latency, and a bare
//! WebSocket broadcast baseline on the same machine, while checking that nothing was lost.
//!
//! ```text
//! madoguchi-loadgen --server http://127.0.0.1:8080 --sockets 2000 --phones 200 --counters 4 \
//!     --issue-rate 50 --duration 10 --server-pid $(pidof madoguchi) --json
//! madoguchi-loadgen --sqlite-floor --data ./data
//! ```

mod baseline;
mod clock;
mod floor;
mod http;
mod load;
mod lobby;
mod phone;
mod report;
mod run;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Load generator for the madoguchi server.
#[derive(Parser, Debug, Clone)]
#[command(name = "madoguchi-loadgen", version, about)]
pub(crate) struct Cli {
    /// The server's base URL, e.g. http://127.0.0.1:8080 (needed unless --sqlite-floor).
    #[arg(long)]
    server: Option<String>,

    /// Lobby live sockets (GET /api/v1/sites/{site}/live) held open for the whole run.
    #[arg(long, default_value_t = 100)]
    sockets: usize,

    /// Phone channels: this many tickets are issued first, then each followed by its token.
    #[arg(long, default_value_t = 10)]
    phones: usize,

    /// Seconds of issuing (the load phase).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,

    /// Counter loops (call-next, start, complete). The K counters are chosen so that as many
    /// queues as possible have one serving them first (demo site: 6, 9, 1, 8, then 2, 3…);
    /// phones and dispensers issue only into the queues they serve.
    #[arg(long, default_value_t = 3)]
    counters: usize,

    /// The counters to run instead, e.g. `1,2,3` (overrides the choice of --counters).
    #[arg(long)]
    counter_ids: Option<String>,

    /// Tickets issued per second by the dispensers (open loop: the schedule does not wait for
    /// answers).
    #[arg(long, default_value_t = 10.0)]
    issue_rate: f64,

    /// Closed loop instead: this many dispenser clients, each issuing its next ticket as soon
    /// as the previous one is answered, for --duration (--issue-rate is then ignored). This
    /// measures the durable issuance rate the server sustains.
    #[arg(long, default_value_t = 0)]
    issuers: usize,

    /// With --issuers: the sites they issue at, round robin (`all`: every site of
    /// GET /api/v1/sites), e.g. to measure appends of several sites sharing one database file.
    /// Default: --site.
    #[arg(long, requires = "issuers")]
    issue_sites: Option<String>,

    /// With --issuers: more server instances (base URLs, comma-separated) sharing the same
    /// store; the issuing clients take --server and these in turn (client c: server c mod n), to
    /// measure several instances on one Redis.
    #[arg(long)]
    issue_servers: Option<String>,

    /// The server the lobby sockets and phone channels connect to, when it is another instance
    /// than --server (which the counters and dispensers use): the call-to-screen time across
    /// instances on one Redis.
    #[arg(long)]
    lobby_server: Option<String>,

    /// The site to load.
    #[arg(long, default_value = "chuo")]
    site: String,

    /// Print one JSON object on stdout (progress goes to stderr either way).
    #[arg(long)]
    json: bool,

    /// The server's process id, to read its peak resident memory (/proc/PID/status VmHWM).
    #[arg(long)]
    server_pid: Option<u32>,

    /// Milliseconds a counter waits between call, start and complete.
    #[arg(long, default_value_t = 25)]
    counter_pause_ms: u64,

    /// Seconds the bare broadcast baseline sends for (default: the duration, at most 5).
    #[arg(long)]
    baseline_seconds: Option<f64>,

    /// Sockets connecting at once.
    #[arg(long, default_value_t = 200)]
    connect_concurrency: usize,

    /// Dispenser token (issue).
    #[arg(
        long,
        default_value = "demo-dispenser",
        env = "MADOGUCHI_LOADGEN_DISPENSER_TOKEN"
    )]
    dispenser_token: String,

    /// Counter token (counter actions).
    #[arg(
        long,
        default_value = "demo-counter",
        env = "MADOGUCHI_LOADGEN_COUNTER_TOKEN"
    )]
    counter_token: String,

    /// Floor token (reads of the board, catalog and tickets, never rate-limited).
    #[arg(
        long,
        default_value = "demo-floor",
        env = "MADOGUCHI_LOADGEN_FLOOR_TOKEN"
    )]
    floor_token: String,

    /// Instead of a load run: the commit rate of a plain SQLite loop (WAL, synchronous=FULL,
    /// one row per transaction) on the disk of --data.
    #[arg(long, requires = "data")]
    sqlite_floor: bool,

    /// The directory whose disk --sqlite-floor measures (a scratch file is made and removed).
    #[arg(long)]
    data: Option<PathBuf>,

    /// Seconds of the --sqlite-floor loop.
    #[arg(long, default_value_t = 3.0)]
    floor_seconds: f64,

    /// Internal: run as the baseline broadcast server (the load run starts it as a child).
    #[arg(long, hide = true)]
    baseline_serve: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    clock::start();
    if cli.baseline_serve {
        return report_err(baseline::serve());
    }
    if cli.sqlite_floor {
        let dir = cli.data.clone().expect("clap requires --data");
        return report_err(floor::run(&dir, cli.floor_seconds, cli.json));
    }
    let Some(server) = cli.server.clone() else {
        eprintln!("madoguchi-loadgen: --server URL is required (or --sqlite-floor --data DIR)");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("madoguchi-loadgen: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run::run(cli.clone(), server)) {
        Ok(report) => {
            if cli.json {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("a report serializes")
                );
            } else {
                print!("{}", report.human());
            }
            if report.violations() == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("madoguchi-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn report_err(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("madoguchi-loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}
