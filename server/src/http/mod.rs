//! The HTTP API and the live WebSocket feed. One module per resource, each with its `router()`.

mod auth;
mod board;
mod counters;
mod error;
mod kpi;
mod live;
mod ops;
mod printers;
mod screens;
mod tickets;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderMap;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tokio::sync::watch;

pub use error::ApiError;

use crate::config::{Config, Role};
use crate::core::SiteId;
use crate::log::EventLog;
use crate::metrics::Metrics;
use crate::printers::PrinterHub;
use crate::projection::ProjectionStore;
use crate::site::{SiteDeps, SiteHandle};

/// Request bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 64 * 1024;

/// Cheap handles shared by every request.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    sites: BTreeMap<SiteId, SiteHandle>,
    deps: SiteDeps,
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    pub fn new(
        config: Config,
        sites: Vec<SiteHandle>,
        deps: SiteDeps,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let sites = sites
            .into_iter()
            .map(|h| (h.config.id.clone(), h))
            .collect();
        Self {
            inner: Arc::new(Inner {
                config,
                sites,
                deps,
                shutdown,
            }),
        }
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn metrics(&self) -> &Metrics {
        &self.inner.deps.metrics
    }
    pub fn log(&self) -> &Arc<dyn EventLog> {
        &self.inner.deps.log
    }
    pub fn store(&self) -> &ProjectionStore {
        &self.inner.deps.store
    }
    pub fn printers(&self) -> &PrinterHub {
        &self.inner.deps.printers
    }
    pub fn sites(&self) -> impl Iterator<Item = &SiteHandle> {
        self.inner.sites.values()
    }
    pub fn site(&self, id: &SiteId) -> Option<&SiteHandle> {
        self.inner.sites.get(id)
    }
    /// Changes when the server begins to shut down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.clone()
    }

    fn lookup(&self, raw: &str) -> Result<(SiteId, &SiteHandle), ApiError> {
        let unknown = || ApiError::not_found("unknown_site", format!("unknown site {raw:?}"));
        let id: SiteId = raw.parse().map_err(|_| unknown())?;
        let handle = self.inner.sites.get(&id).ok_or_else(unknown)?;
        Ok((id, handle))
    }

    /// A site for a public read (lobby screens, phones): no token.
    pub(crate) fn public_site(&self, raw: &str) -> Result<&SiteHandle, ApiError> {
        self.lookup(raw).map(|(_, h)| h)
    }

    /// A site for an action: the token is checked first, then the site.
    pub(crate) fn site_for(
        &self,
        raw: &str,
        headers: &HeaderMap,
        roles: &[Role],
    ) -> Result<(SiteId, &SiteHandle), ApiError> {
        let id: Option<SiteId> = raw.parse().ok();
        let scope = id.as_ref().map_or(auth::Scope::Any, auth::Scope::Site);
        auth::require(&self.inner.config, headers, scope, roles)?;
        self.lookup(raw)
    }
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(board::router())
        .merge(tickets::router())
        .merge(counters::router())
        .merge(live::router())
        .merge(ops::router())
        .merge(kpi::router())
        .merge(printers::router())
        .merge(screens::router())
        .fallback(|| async {
            ApiError::not_found("not_found", "no such endpoint; see docs/API.md")
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Times every request by its route pattern. The concrete path is never logged: it may hold a
/// phone page token.
async fn observe(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let elapsed = start.elapsed();
    let status = response.status();
    app.metrics()
        .http_requests
        .with_label_values(&[method.as_str(), route.as_str(), status.as_str()])
        .observe(elapsed.as_secs_f64());
    tracing::debug!(%method, %route, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request");
    response
}
