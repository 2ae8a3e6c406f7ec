//! The `madoguchi` binary: parses arguments, loads the configuration, starts logging, binds the
//! listener and hands over to [`madoguchi::server::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use madoguchi::config::Config;

/// mimalloc instead of the C library's allocator: the server allocates many small, short-lived
/// values per request (headers, JSON, events), from several threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "madoguchi",
    version,
    about = "madoguchi — 受付番号発券・待ち時間表示 / queue ticketing and wait-time display"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the server (embedded SQLite store in the data directory).
    Serve {
        /// Configuration file.
        #[arg(long, env = "MADOGUCHI_CONFIG", default_value = "config/demo.toml")]
        config: PathBuf,
        /// Address to listen on.
        #[arg(long, env = "MADOGUCHI_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Directory for the event log and visit records (created if missing). With a Redis
        /// store: this instance's visit records, print jobs and snapshots.
        #[arg(long, env = "MADOGUCHI_DATA", default_value = "./data")]
        data: PathBuf,
        /// Where the event log lives: `sqlite` (the file in the data directory), or a Redis URL
        /// `redis://[:PASSWORD@]HOST:PORT/DB` shared by several server instances.
        #[arg(long, env = "MADOGUCHI_STORE", default_value = "sqlite")]
        store: String,
        /// Prefix of every Redis key, so several deployments can share one Redis.
        #[arg(long, env = "MADOGUCHI_REDIS_PREFIX", default_value = madoguchi::log::DEFAULT_REDIS_PREFIX)]
        redis_prefix: String,
        /// This instance's name, in logs and (with a Redis store) as the `server` label of every
        /// metric. Default: the host name and the port listened on, e.g. `ward-app-1:8080`.
        #[arg(long, env = "MADOGUCHI_SERVER_NAME")]
        server_name: Option<String>,
        /// With a Redis store: how long (seconds) each site's stream keeps events behind a
        /// snapshot before they are trimmed from Redis (every instance's own SQLite file keeps
        /// the whole history). Default: 7 days.
        #[arg(long, env = "MADOGUCHI_REDIS_RETENTION_S", default_value_t = madoguchi::server::DEFAULT_RETENTION.as_secs())]
        redis_retention_s: u64,
        /// Serve only the public routes (phone pages and their channel, board, lobby), for the
        /// internet-facing side of the city's network; everything with a token answers 404.
        #[arg(long, env = "MADOGUCHI_PUBLIC_ONLY")]
        public_only: bool,
        /// Take tickets at any hour: the configuration's reception hours (`[hours]`) are not
        /// applied. For load tests and drills outside office hours.
        #[arg(long, env = "MADOGUCHI_ALWAYS_OPEN")]
        always_open: bool,
    },
    /// Check a configuration file: print a summary, or every error with file, field and reason.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
    /// Copy DATA/madoguchi.db into FILE while the server runs (SQLite online backup).
    Backup {
        /// The backup file to write.
        file: PathBuf,
        /// The server's data directory.
        #[arg(long, env = "MADOGUCHI_DATA", default_value = "./data")]
        data: PathBuf,
        /// Overwrite FILE if it exists.
        #[arg(long)]
        force: bool,
    },
    /// Replay the event log and check the visit records and print jobs against it
    /// (exit 0: all match, 1: a mismatch, 2: could not check).
    Verify {
        /// The server's data directory (checks DATA/madoguchi.db).
        #[arg(long, env = "MADOGUCHI_DATA", default_value = "./data")]
        data: PathBuf,
        /// A database file to check instead of DATA/madoguchi.db, e.g. a backup.
        #[arg(long)]
        db: Option<PathBuf>,
        /// Configuration file (the sites to replay).
        #[arg(long, env = "MADOGUCHI_CONFIG", default_value = "config/demo.toml")]
        config: PathBuf,
    },
    /// Write a realistic event log into a new data directory: N simulated business days at
    /// every site, without a server (for measurements; see README, Performance).
    Generate {
        /// Business days to simulate (weekdays, the last one before today).
        #[arg(long)]
        days: u32,
        /// Data directory to write (its event log must be empty).
        #[arg(long)]
        data: PathBuf,
        /// Configuration file (the sites, counters and procedures).
        #[arg(long, env = "MADOGUCHI_CONFIG", default_value = "config/demo.toml")]
        config: PathBuf,
        /// Residents arriving per site on a mean day (Mondays and the moving season more,
        /// Thursdays fewer).
        #[arg(long, default_value_t = 400)]
        visitors_per_day: u32,
        /// Seed of the random choices (the same seed gives the same log).
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Score every wait predictor on simulated days of a scenario (MAE, p90, RMSE, RASE, bias),
    /// plus the stationary M/M/s check. Progress goes to stderr.
    BenchEstimates {
        /// Scenario file.
        #[arg(long, default_value = "config/scenarios/moving-season.toml")]
        scenario: PathBuf,
        /// Configuration file holding the scenario's site.
        #[arg(long, env = "MADOGUCHI_CONFIG", default_value = "config/demo.toml")]
        config: PathBuf,
        /// Simulated business days.
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// Seed (the same seed gives the same days).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Rescale the scenario's arrivals to this mean per day.
        #[arg(long)]
        arrivals_per_day: Option<f64>,
        /// Print only the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::CheckConfig { file } => match Config::load(&file) {
            Ok(config) => {
                use std::io::Write;
                // A closed pipe (`| head`) is not an error worth a panic.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{}: OK", file.display());
                let _ = write!(out, "{}", config.summary());
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                eprintln!(
                    "設定ファイルに {} 件の誤りがあります / {} error(s) in {}",
                    errors.0.len(),
                    errors.0.len(),
                    file.display()
                );
                ExitCode::from(2)
            }
        },
        Cmd::BenchEstimates {
            scenario,
            config,
            days,
            seed,
            arrivals_per_day,
            json,
        } => {
            let options = madoguchi::sim::bench::Options {
                scenario,
                config,
                days,
                seed,
                arrivals_per_day,
            };
            let started = std::time::Instant::now();
            let report = madoguchi::sim::bench::run(&options, &mut |what, done, of| {
                eprint!("\r{what}: day {done}/{of}   ");
                if done == of {
                    eprintln!();
                }
            });
            match report {
                Ok(report) => {
                    eprintln!("done in {:.1} s", started.elapsed().as_secs_f64());
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string(&report).expect("a report serializes")
                        );
                    } else {
                        print!("{}", madoguchi::sim::bench::table(&report));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("madoguchi bench-estimates: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Backup { file, data, force } => {
            madoguchi::maintenance::backup_command(&data, &file, force)
        }
        Cmd::Verify { data, db, config } => {
            let db = db.unwrap_or_else(|| data.join(madoguchi::server::DB_FILE));
            madoguchi::maintenance::verify_command(&db, &config)
        }
        Cmd::Generate {
            days,
            data,
            config,
            visitors_per_day,
            seed,
        } => madoguchi::generate::generate_command(
            &config,
            &data,
            madoguchi::generate::Options {
                days,
                visitors_per_day,
                seed,
            },
        ),
        Cmd::Serve {
            config,
            listen,
            data,
            store,
            redis_prefix,
            server_name,
            redis_retention_s,
            public_only,
            always_open,
        } => {
            let _log_writer = init_tracing();
            let server_name = server_name.unwrap_or_else(|| default_server_name(listen));
            let store = (
                store,
                redis_prefix,
                std::time::Duration::from_secs(redis_retention_s),
            );
            match serve(
                config,
                listen,
                data,
                &store,
                &server_name,
                (public_only, always_open),
            ) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("madoguchi: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Log lines go to standard output from a thread of their own: a request never waits for the
/// write, and lines that come together leave in one write (the thread flushes whenever it has
/// nothing more to write). Nothing is dropped: a full queue makes the logging side wait. Keep
/// the guard until the end, so the last lines are written.
fn init_tracing() -> tracing_appender::non_blocking::WorkerGuard {
    use tracing_subscriber::EnvFilter;
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .thread_name("madoguchi-log-output")
        .finish(std::io::BufWriter::new(std::io::stdout()));
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(writer)
        .init();
    guard
}

/// The host name and the port: tells instances apart on a dashboard.
fn default_server_name(listen: SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "madoguchi".to_owned());
    format!("{host}:{}", listen.port())
}

fn serve(
    config_path: PathBuf,
    listen: SocketAddr,
    data: PathBuf,
    (store, redis_prefix, retention): &(String, String, std::time::Duration),
    server_name: &str,
    (public_only, always_open): (bool, bool),
) -> anyhow::Result<()> {
    let store = madoguchi::server::Store::parse(store, redis_prefix, *retention)?;
    let mut config = Config::load(&config_path).map_err(|e| {
        anyhow::anyhow!(
            "{e}\n(run `madoguchi check-config {}` for details)",
            config_path.display()
        )
    })?;
    if always_open {
        tracing::warn!("--always-open: every queue takes tickets at any hour; the configured reception hours are not applied");
        config.ignore_hours();
    }
    if config.demo_tokens {
        tracing::warn!("demo tokens are configured: fine for a demo, never for a real office (see README, Tokens)");
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| {
                format!("cannot listen on {listen} (is another server running there?)")
            })?;
        let addr = listener.local_addr()?;
        for site in &config.sites {
            tracing::info!(
                "site {} ({}): board http://{addr}/api/v1/sites/{}/board",
                site.id,
                site.name.ja,
                site.id
            );
        }
        madoguchi::server::run(
            config,
            &data,
            &store,
            server_name,
            public_only,
            listener,
            madoguchi::server::shutdown_signal(),
        )
        .await
    })
}
