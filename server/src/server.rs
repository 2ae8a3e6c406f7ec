//! Wiring: open the store, rebuild every site, serve the API until shutdown.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::hooks::{DeliveryStore, Hooks};
use crate::http::{public_router, router, AppState};
use crate::log::{EventLog, RedisLog, SnapshotStore, SqliteLog, SqliteSnapshots};
use crate::metrics::Metrics;
use crate::net;
use crate::printers::PrinterHub;
use crate::projection::ProjectionStore;
use crate::site::{self, SiteDeps};

/// How long open connections get to finish after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The database file inside the data directory.
pub const DB_FILE: &str = "madoguchi.db";

/// Where the event log lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Store {
    /// The embedded SQLite file in the data directory: one server instance, nothing else to run.
    Sqlite,
    /// Redis, shared by several server instances; every key starts with `prefix`. The data
    /// directory then holds this instance's own projections (visit records, print jobs) and its
    /// copy of the log; snapshots are kept in Redis, and each site's stream is trimmed behind
    /// the newest snapshot older than `retention`.
    Redis {
        url: String,
        prefix: String,
        retention: Duration,
    },
}

/// How long the shared log keeps events in Redis behind a snapshot, unless configured.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Store {
    /// `sqlite` (or empty), or a Redis URL `redis://[:PASSWORD@]HOST:PORT/DB` (`rediss://` for
    /// TLS).
    pub fn parse(store: &str, prefix: &str, retention: Duration) -> anyhow::Result<Store> {
        match store.trim() {
            "" | "sqlite" => Ok(Store::Sqlite),
            url if url.starts_with("redis://") || url.starts_with("rediss://") => {
                Ok(Store::Redis {
                    url: url.to_owned(),
                    prefix: prefix.to_owned(),
                    retention,
                })
            }
            other => anyhow::bail!(
                "unknown store {:?}: use `sqlite` or a Redis URL such as redis://127.0.0.1:6379/0",
                crate::log::redacted(other)
            ),
        }
    }

    /// How the store is named in logs (no password).
    pub fn describe(&self, db: &Path) -> String {
        match self {
            Store::Sqlite => db.display().to_string(),
            Store::Redis { url, prefix, .. } => {
                format!("{} (keys {prefix}…)", crate::log::redacted(url))
            }
        }
    }
}

/// Runs the server on `listener` until `shutdown` completes, then drains connections.
pub async fn run(
    config: Config,
    data_dir: &Path,
    store: &Store,
    server_name: &str,
    public_only: bool,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let db = data_dir.join(DB_FILE);
    let (log, snapshots, delivery): (Arc<dyn EventLog>, Arc<dyn SnapshotStore>, _) = match store {
        Store::Sqlite => (
            Arc::new(
                SqliteLog::open(&db)
                    .with_context(|| format!("cannot open the event log {}", db.display()))?,
            ),
            Arc::new(
                SqliteSnapshots::open(&db)
                    .with_context(|| format!("cannot open the snapshots in {}", db.display()))?,
            ),
            DeliveryStore::sqlite(&db).with_context(|| {
                format!("cannot open the webhook deliveries in {}", db.display())
            })?,
        ),
        Store::Redis {
            url,
            prefix,
            retention,
        } => {
            let log = RedisLog::connect(url, prefix)
                .await
                .context("cannot open the event log in Redis")?;
            let snapshots = log.snapshots(*retention);
            let (conn, prefix) = log.connection();
            let delivery = DeliveryStore::redis(conn, prefix);
            (Arc::new(log), Arc::new(snapshots), delivery)
        }
    };
    let visits = ProjectionStore::open(&db)
        .with_context(|| format!("cannot open the visit records in {}", db.display()))?;
    let metrics = match store {
        Store::Sqlite => Metrics::new(),
        Store::Redis { .. } => Metrics::for_server(server_name),
    };
    let sites_runtime =
        site::SitesRuntime::new().context("cannot start the site actors' runtime")?;
    let deps = SiteDeps {
        log: log.clone(),
        store: visits.clone(),
        printers: PrinterHub::default(),
        clock: crate::clock::guarded(metrics.clock_skew.clone()),
        metrics,
        tickets: site::TicketIndex::default(),
        snapshots: Some(snapshots),
        runtime: Some(sites_runtime.handle()),
    };

    let mut handles = Vec::new();
    let mut actors = Vec::new();
    for site_config in &config.sites {
        let (handle, task) = site::start(site_config.clone(), deps.clone())
            .await
            .with_context(|| format!("cannot rebuild site {}", site_config.id))?;
        handles.push(handle);
        actors.push(task);
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let limits = config.limits.clone();
    let fd_limit = net::raise_fd_limit();
    let cap = net::connection_cap(limits.max_connections, fd_limit);
    let connections = deps.metrics.http_connections.clone();
    let reference_key = delivery
        .reference_key()
        .await
        .context("cannot read the key of booking references")?;
    if !crate::hooks::set_reference_key(reference_key) {
        anyhow::bail!("the key of booking references was already in use");
    }
    let hooks = Hooks::new(
        delivery,
        log.clone(),
        visits.clone(),
        deps.metrics.clone(),
        server_name,
        config.webhooks.clone(),
    );
    // A public-only instance (the residents' side, on the internet) takes no part in delivering.
    if !public_only {
        hooks
            .start(&handles)
            .await
            .context("cannot start the webhook deliveries")?;
    }
    let notices =
        crate::notices::Notices::open(data_dir, config.notices.clone(), deps.metrics.clone())
            .context("cannot open the notices' contacts")?;
    let notifiers = notices.start(&handles, log.clone(), visits.clone());
    let state = AppState::new(config, handles, deps, stop_rx)
        .with_hooks(hooks.clone())
        .with_notices(notices);
    state.start_suggestions();
    let public = state.public_limits().clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(60));
        loop {
            every.tick().await;
            public.forget_quiet();
        }
    });
    let app = if public_only {
        tracing::info!(
            routes = crate::http::PUBLIC_ROUTES.len(),
            "public side only: serving the residents' and the lobby's routes (see docs/DEPLOY.md)"
        );
        public_router(state)
    } else {
        router(state)
    };
    let addr = listener.local_addr()?;
    tracing::info!(%addr, data = %data_dir.display(), store = %store.describe(&db), server = server_name, "madoguchi is serving");
    tracing::info!(
        open_files = fd_limit,
        connections = cap,
        websockets_per_address = limits.websockets_per_address,
        "connection limits"
    );
    let shutdown = async move {
        shutdown.await;
        // WebSockets watch this and close with 1001; plain requests are drained by the server.
        let _ = stop_tx.send(true);
    };
    net::serve(
        listener,
        app,
        &limits,
        cap,
        connections,
        shutdown,
        SHUTDOWN_GRACE,
    )
    .await;
    hooks.stop().await;
    notifiers.iter().for_each(|t| t.abort());
    futures_util::future::join_all(notifiers).await;
    // Handles are gone with the router; every actor finishes its queued commands, writes a
    // snapshot and ends, all sites at once.
    let stopping = futures_util::future::join_all(actors);
    if tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .is_err()
    {
        tracing::warn!("site actors still busy after 5 s; stopping anyway");
    }
    drop(sites_runtime);
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
