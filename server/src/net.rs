//! Connections from a public network: the accept loop with a connection cap under the
//! file-descriptor limit, hyper's header read timeout, a timeout on request bodies, the client
//! address behind trusted proxies, per-address rate limits for the public reads and a per-address
//! cap on WebSockets.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request};
use axum::Router;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use prometheus::IntGauge;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

use crate::config::Limits;

/// File descriptors kept free for the database, log files and the like.
const FD_RESERVE: u64 = 64;

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
            rlimit::getrlimit(rlimit::Resource::NOFILE).map_or(1024, |(soft, _)| soft)
        }
    }
}

/// The connection cap: the configured one, but never so high that `accept` could run out of
/// file descriptors.
pub fn connection_cap(configured: usize, fd_limit: u64) -> usize {
    let by_fds = fd_limit.saturating_sub(FD_RESERVE).max(16);
    configured.min(usize::try_from(by_fds).unwrap_or(usize::MAX))
}

/// One accepted connection's place under the cap. Requests carry it in their extensions so an
/// upgraded WebSocket keeps the place for as long as it lives.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
    open: IntGauge,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// The time a request body may take, for the body reader (see `http::error::RawBody`).
#[derive(Debug, Clone, Copy)]
pub struct BodyTimeout(pub Duration);

/// Accepts connections until `shutdown` completes, then lets open requests finish for at most
/// `grace`. WebSockets watch the server's own shutdown signal and close themselves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &Limits,
    cap: usize,
    open: IntGauge,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) {
    let permits = Arc::new(Semaphore::new(cap));
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(limits.header_read_timeout);
    let body_timeout = limits.request_body_timeout;
    tokio::pin!(shutdown);
    loop {
        // Wait for a place first: past the cap, clients wait in the kernel's backlog instead of
        // making `accept` fail for everyone.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: wait a
                    // moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        open.inc();
        let slot = Arc::new(ConnectionSlot {
            _permit: permit,
            open: open.clone(),
        });
        let app = app.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(|body| {
                axum::body::Body::new(tower_http::timeout::TimeoutBody::new(body_timeout, body))
            });
            let ext = request.extensions_mut();
            ext.insert(ConnectInfo(peer));
            ext.insert(slot.clone());
            ext.insert(BodyTimeout(body_timeout));
            app.clone().oneshot(request)
        });
        let connection = builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // Errors here are the client's (reset, timeout, bad request line): nothing to do.
            let _ = connection.await;
        });
    }
    drop(listener);
    tracing::info!("shutting down: finishing open requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!("connections still open after {grace:?}; stopping anyway");
        }
    }
}

/// Where a request comes from: the peer, or behind a trusted proxy the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy.
pub fn client_ip(
    peer: Option<SocketAddr>,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let Some(peer) = peer else {
        return IpAddr::from([0, 0, 0, 0]);
    };
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer.ip()) {
        return peer.ip();
    }
    let hops: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    hops.iter()
        .rev()
        .find(|ip| !is_trusted(ip))
        .or_else(|| hops.first())
        .copied()
        .unwrap_or(peer.ip())
}

/// Per-address limits for what anyone may ask without a token.
pub struct PublicLimits {
    requests: DefaultKeyedRateLimiter<IpAddr>,
    sockets: Mutex<HashMap<IpAddr, usize>>,
    sockets_per_address: usize,
}

/// Too many requests: retry after this long.
#[derive(Debug)]
pub struct RetryAfter(pub Duration);

impl PublicLimits {
    pub fn new(limits: &Limits) -> Self {
        let rate = NonZeroU32::new(limits.public_requests_per_s).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.public_burst).unwrap_or(rate);
        Self {
            requests: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            sockets: Mutex::new(HashMap::new()),
            sockets_per_address: limits.websockets_per_address,
        }
    }

    /// Counts one request from `ip` against its rate.
    pub fn request(&self, ip: IpAddr) -> Result<(), RetryAfter> {
        self.requests.check_key(&ip).map_err(|not_until| {
            RetryAfter(not_until.wait_time_from(DefaultClock::default().now()))
        })
    }

    /// A place for one more WebSocket from `ip`, given back when the guard drops.
    pub fn socket(self: &Arc<Self>, ip: IpAddr) -> Option<SocketGuard> {
        let mut sockets = self.sockets.lock().unwrap_or_else(|p| p.into_inner());
        let n = sockets.entry(ip).or_insert(0);
        if *n >= self.sockets_per_address {
            return None;
        }
        *n += 1;
        Some(SocketGuard {
            limits: self.clone(),
            ip,
        })
    }

    /// Forgets addresses that have been quiet long enough to be back at a full burst.
    pub fn forget_quiet(&self) {
        self.requests.retain_recent();
        self.requests.shrink_to_fit();
    }
}

/// One WebSocket's place in its address's count.
pub struct SocketGuard {
    limits: Arc<PublicLimits>,
    ip: IpAddr,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        let mut sockets = self
            .limits
            .sockets
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = sockets.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                sockets.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().unwrap());
        h
    }

    #[test]
    fn forwarded_address_only_from_a_trusted_proxy() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/24".parse().unwrap()];
        let proxy: SocketAddr = "10.0.0.5:4000".parse().unwrap();
        let stranger: SocketAddr = "192.0.2.7:4000".parse().unwrap();
        let h = headers("198.51.100.1, 203.0.113.9, 10.0.0.6");
        // The last hop that is not a proxy of ours; earlier entries may be forged by the client.
        assert_eq!(
            client_ip(Some(proxy), &h, &trusted),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // A client that is not a trusted proxy cannot pick its address.
        assert_eq!(client_ip(Some(stranger), &h, &trusted), stranger.ip());
        assert_eq!(
            client_ip(Some(proxy), &HeaderMap::new(), &trusted),
            proxy.ip()
        );
    }

    #[test]
    fn connection_cap_stays_under_the_fd_limit() {
        assert_eq!(connection_cap(50_000, 1_024), 960);
        assert_eq!(connection_cap(500, 1_048_576), 500);
    }

    #[test]
    fn sockets_per_address_are_counted_and_given_back() {
        let limits = Limits {
            websockets_per_address: 2,
            ..Limits::default()
        };
        let public = Arc::new(PublicLimits::new(&limits));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = public.socket(ip).unwrap();
        let _b = public.socket(ip).unwrap();
        assert!(public.socket(ip).is_none());
        assert!(public.socket("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(public.socket(ip).is_some());
    }

    #[test]
    fn rate_limit_answers_when_to_retry() {
        let limits = Limits {
            public_requests_per_s: 1,
            public_burst: 3,
            ..Limits::default()
        };
        let public = PublicLimits::new(&limits);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(public.request(ip).is_ok());
        }
        let RetryAfter(wait) = public.request(ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(1));
    }
}
