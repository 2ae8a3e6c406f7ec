//! The HTTP API and the live WebSocket feed. One module per resource, each with its `router()`.

mod audit;
mod auth;
mod board;
mod counters;
mod error;
mod integrations;
mod kpi;
mod live;
mod notices;
mod openapi;
mod ops;
mod printers;
mod public;
mod reception;
mod reservations;
mod screens;
mod socket;
mod tickets;
mod whatif;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tokio::sync::watch;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;

pub use error::ApiError;

use crate::config::{Config, Role};
use crate::core::SiteId;
use crate::log::EventLog;
use crate::metrics::Metrics;
use crate::net::{self, PublicLimits, RetryAfter};
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
    public: Arc<PublicLimits>,
    /// The floor board's latest suggestions per site (see `crate::suggest`).
    suggestions: BTreeMap<SiteId, crate::suggest::Board>,
    /// Each site's forecast calendar, made at most every few minutes (see `public`).
    calendars: BTreeMap<SiteId, public::CalendarCache>,
    /// The webhook deliverers (none in tests that build a state without them).
    hooks: Option<crate::hooks::Hooks>,
    /// The near-turn notices' side table and mail server.
    notices: Option<crate::notices::Notices>,
}

/// The longest a read of the stored projections waits for them to catch up.
const SETTLE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

impl AppState {
    pub fn new(
        config: Config,
        sites: Vec<SiteHandle>,
        deps: SiteDeps,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let sites: BTreeMap<SiteId, SiteHandle> = sites
            .into_iter()
            .map(|h| (h.config.id.clone(), h))
            .collect();
        let suggestions = sites
            .keys()
            .map(|id| (id.clone(), Default::default()))
            .collect();
        let calendars = sites
            .keys()
            .map(|id| (id.clone(), Default::default()))
            .collect();
        let public = Arc::new(PublicLimits::new(&config.limits));
        Self {
            inner: Arc::new(Inner {
                config,
                sites,
                deps,
                shutdown,
                public,
                suggestions,
                calendars,
                hooks: None,
                notices: None,
            }),
        }
    }

    /// With the webhook deliverers, for the floor board's list and the KPI's handovers.
    pub fn with_hooks(mut self, hooks: crate::hooks::Hooks) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.hooks = Some(hooks);
        }
        self
    }
    pub(crate) fn hooks(&self) -> Option<&crate::hooks::Hooks> {
        self.inner.hooks.as_ref()
    }
    /// With the near-turn notices (the phone page's opt-in).
    pub fn with_notices(mut self, notices: crate::notices::Notices) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.notices = Some(notices);
        }
        self
    }
    pub(crate) fn notices(&self) -> Option<&crate::notices::Notices> {
        self.inner.notices.as_ref()
    }

    /// Where a site's forecast calendar is kept.
    fn calendar_cache(&self, site: &SiteId) -> Option<&public::CalendarCache> {
        self.inner.calendars.get(site)
    }
    /// Where a site's suggestions are kept.
    pub fn suggestions(&self, site: &SiteId) -> Option<&crate::suggest::Board> {
        self.inner.suggestions.get(site)
    }
    /// Starts the task that recomputes each site's suggestions until shutdown.
    pub fn start_suggestions(&self) {
        for (id, board) in &self.inner.suggestions {
            if let Some(handle) = self.inner.sites.get(id) {
                tokio::spawn(crate::suggest::run(
                    handle.clone(),
                    board.clone(),
                    self.inner.shutdown.clone(),
                ));
            }
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
    /// Before a read of the stored projections: waits briefly until they hold every event
    /// appended so far at `site` (every site for `None`), so a caller reads its own writes. A
    /// lagging projection (see `/readyz`) delays the read by at most [`SETTLE_LIMIT`].
    pub(crate) async fn settled(&self, site: Option<&SiteId>) {
        let sites: Vec<&SiteHandle> = match site {
            Some(id) => self.site(id).into_iter().collect(),
            None => self.sites().collect(),
        };
        futures_util::future::join_all(sites.iter().map(|h| h.settled(SETTLE_LIMIT))).await;
    }
    /// The site that issued a phone token today. On a shared log another instance may have
    /// issued it a moment ago (a phone scans its QR code and the balancer sends it here): for a
    /// token of the right shape that this instance does not know, every site catches up with
    /// the log first, then it is looked up again.
    pub(crate) async fn site_of_token(&self, token: &str) -> Option<&SiteHandle> {
        let known = |token: &str| {
            self.inner
                .sites
                .get(&self.inner.deps.tickets.site_of(token)?)
        };
        if let Some(handle) = known(token) {
            return Some(handle);
        }
        let plausible = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
        if !plausible || !self.inner.deps.log.shared() {
            return None;
        }
        futures_util::future::join_all(self.sites().map(|h| h.sync())).await;
        known(token)
    }
    /// Per-address limits for requests without a token.
    pub fn public_limits(&self) -> &Arc<PublicLimits> {
        &self.inner.public
    }
    /// Where a request comes from (see [`net::client_ip`]).
    pub(crate) fn client_ip(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> IpAddr {
        net::client_ip(peer, headers, &self.inner.config.limits.trusted_proxies)
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
        self.granted_site(raw, headers, roles)
            .map(|(id, handle, _)| (id, handle))
    }

    /// Like [`AppState::site_for`], with the token's grant (its name and bindings).
    pub(crate) fn granted_site(
        &self,
        raw: &str,
        headers: &HeaderMap,
        roles: &[Role],
    ) -> Result<(SiteId, &SiteHandle, &crate::config::TokenGrant), ApiError> {
        let id: Option<SiteId> = raw.parse().ok();
        let scope = id.as_ref().map_or(auth::Scope::Any, auth::Scope::Site);
        let grant = auth::require(&self.inner.config, headers, scope, roles)?;
        let (id, handle) = self.lookup(raw)?;
        Ok((id, handle, grant))
    }
}

/// The peer address of the connection, when the server was reached over TCP (not in `oneshot`
/// tests).
pub(crate) struct Peer(pub(crate) Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// Every API route with its OpenAPI operation (everything but the screens). Built with a state
/// for serving (the public reads get their rate limit), without one for the document alone.
fn api(state: Option<&AppState>) -> OpenApiRouter<AppState> {
    // What anyone may ask again and again without a token: limited per client address.
    let mut polled = OpenApiRouter::new()
        .merge(board::polled())
        .merge(tickets::residents())
        .merge(reservations::residents())
        .merge(notices::residents());
    let mut public = public::polled();
    if let Some(state) = state {
        polled = polled.route_layer(middleware::from_fn_with_state(state.clone(), limit_public));
        public = public.route_layer(middleware::from_fn_with_state(state.clone(), limit_public));
    }
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(board::router())
        .merge(polled)
        .merge(public)
        .merge(reception::router())
        .merge(reservations::router())
        .merge(tickets::router())
        .merge(counters::router())
        .merge(live::router())
        .merge(ops::router())
        .merge(kpi::router())
        .merge(audit::router())
        .merge(whatif::router())
        .merge(printers::router())
        .merge(integrations::router())
        .merge(openapi::router())
}

/// The OpenAPI document of the API, as `GET /api/openapi.json` serves it.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api(None).into_openapi()
}

/// A queue of `handle`'s site named in a request path: 404 `unknown_queue` otherwise.
fn path_queue(
    handle: &crate::site::SiteHandle,
    raw: &str,
) -> Result<crate::core::QueueId, ApiError> {
    let unknown = || ApiError::not_found("unknown_queue", format!("unknown queue {raw:?}"));
    let id: crate::core::QueueId = raw.parse().map_err(|_| unknown())?;
    if handle.config.queue(&id).is_none() {
        return Err(unknown());
    }
    Ok(id)
}

/// The whole API.
pub fn router(state: AppState) -> Router {
    let response_timeout = state.config().limits.response_timeout;
    let (api, _) = api(Some(&state)).split_for_parts();
    Router::new()
        .merge(api)
        .merge(screens::router())
        .fallback(|| async {
            ApiError::not_found("not_found", "no such endpoint; see docs/API.md")
        })
        // After every route is in: each route's other methods answer in the API's error shape
        // (axum keeps the `Allow` header).
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method; see the Allow header",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(move |request: Request, next: Next| {
            answer_within(response_timeout, request, next)
        }))
        .layer(middleware::from_fn(close_after_refused_body))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn_with_state(
            public_cors(&state.config().public.origins),
            cors_for_public,
        ))
        .with_state(state)
}

/// Where the city's website may read from a browser: the public congestion figures.
const CORS_PREFIX: &str = "/api/v1/public/";

/// CORS for the city's `origins` (the `[public]` ones).
fn public_cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    let origins: Vec<axum::http::HeaderValue> =
        origins.iter().filter_map(|o| o.parse().ok()).collect();
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::AllowOrigin::list(origins))
        .allow_methods([Method::GET])
        .expose_headers([axum::http::header::ETAG])
        .max_age(std::time::Duration::from_secs(3600))
}

/// Applies `cors` to [`CORS_PREFIX`] alone, outermost, so a browser's preflight (`OPTIONS`)
/// meets it before routing; every other path answers `OPTIONS` as before (405), with no CORS
/// header.
async fn cors_for_public(
    State(cors): State<tower_http::cors::CorsLayer>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    use tower::{Layer, ServiceExt};
    if !request.uri().path().starts_with(CORS_PREFIX) {
        return next.run(request).await;
    }
    let inner = tower::service_fn(move |request: Request| {
        let next = next.clone();
        async move { Ok::<_, std::convert::Infallible>(next.run(request).await) }
    });
    match cors.layer(inner).oneshot(request).await {
        Ok(response) => response.into_response(),
        Err(never) => match never {},
    }
}

/// The routes a `serve --public-only` instance serves (by route pattern): what residents and the
/// lobby screens reach from the internet — the phone page and its channel, a ticket's cancel and
/// rating, the board, the live feed, the catalog and site list the screens load, their assets,
/// and the health checks for the balancer. Nothing with a token: no kiosk, counter, floor,
/// printer, KPI, audit, export, what-if or metrics.
pub const PUBLIC_ROUTES: &[&str] = &[
    "/healthz",
    "/readyz",
    "/api/v1/sites",
    "/api/v1/sites/{site}/catalog",
    "/api/v1/sites/{site}/board",
    "/api/v1/sites/{site}/live",
    "/api/v1/tickets/{token}",
    "/api/v1/tickets/{token}/live",
    "/api/v1/tickets/{token}/cancel",
    "/api/v1/tickets/{token}/satisfaction",
    "/api/v1/tickets/{token}/notice",
    "/api/v1/sites/{site}/reservations/{code}/reminder",
    "/api/v1/public/congestion",
    "/api/v1/public/congestion/calendar",
    "/api/v1/sites/{site}/reservations",
    "/api/v1/sites/{site}/reservations/slots",
    "/api/v1/sites/{site}/reservations/{code}",
    "/api/v1/sites/{site}/reservations/{code}/qr.svg",
    "/screens/lobby/{site}",
    "/public/congestion",
    "/public/congestion/{site}",
    "/book/{site}",
    "/t/{token}",
    "/assets/{*path}",
];

/// The API and screens of the public side only ([`PUBLIC_ROUTES`]); every other route answers
/// 404 as if it did not exist.
pub fn public_router(state: AppState) -> Router {
    router(state).layer(middleware::from_fn(only_public))
}

async fn only_public(request: Request, next: Next) -> Response {
    let public = request
        .extensions()
        .get::<MatchedPath>()
        .is_some_and(|p| PUBLIC_ROUTES.contains(&p.as_str()));
    if public {
        next.run(request).await
    } else {
        ApiError::not_found(
            "not_found",
            "この窓口では提供していません / not served on the public side; see docs/DEPLOY.md",
        )
        .into_response()
    }
}

/// A handler that does not answer in time gets 503; streams and WebSockets run on once their
/// answer has begun.
async fn answer_within(limit: std::time::Duration, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::timeout().into_response(),
    }
}

/// A refused request's body may be left unread (the token is checked first), so its connection
/// cannot carry another request: say so, rather than let a keep-alive client reuse a connection
/// the server is about to close.
async fn close_after_refused_body(request: Request, next: Next) -> Response {
    let headers = request.headers();
    let with_body = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .is_some_and(|v| v.as_bytes() != b"0")
        || headers.contains_key(axum::http::header::TRANSFER_ENCODING);
    let mut response = next.run(request).await;
    let status = response.status();
    if with_body && (status.is_client_error() || status.is_server_error()) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// Per-address rate limit for requests without a valid token (phones share a NAT address, so
/// the limit is generous; staff and screens with a token are never limited).
async fn limit_public(State(app): State<AppState>, request: Request, next: Next) -> Response {
    if auth::grant(app.config(), request.headers()).is_some() {
        return next.run(request).await;
    }
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let ip = app.client_ip(peer, request.headers());
    match app.public_limits().request(ip) {
        Ok(()) => next.run(request).await,
        Err(RetryAfter(wait)) => {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", |p| p.as_str());
            app.metrics().rate_limited.with_label_values(&[route]).inc();
            ApiError::rate_limited(wait).into_response()
        }
    }
}

/// The method as a metric label: a closed set, so made-up methods cannot grow `/metrics`.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// Times every request by its route pattern. The concrete path is never logged: it may hold a
/// phone page token.
async fn observe(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let in_flight = app
        .metrics()
        .http_in_flight
        .with_label_values(&[route.as_str()]);
    in_flight.inc();
    let response = next.run(request).await;
    in_flight.dec();
    let elapsed = start.elapsed();
    let status = response.status();
    app.metrics()
        .http_requests
        .with_label_values(&[method, route.as_str(), status.as_str()])
        .observe(elapsed.as_secs_f64());
    tracing::debug!(%method, %route, status = status.as_u16(), ms = elapsed.as_millis() as u64, "request");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_label() {
        let made_up = Method::from_bytes(b"M0000001").unwrap();
        assert_eq!(method_label(&made_up), "other");
        assert_eq!(method_label(&Method::POST), "POST");
    }
}
