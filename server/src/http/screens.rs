//! The screens: plain HTML, CSS and JS modules from `display/`, embedded in the binary (read from
//! disk in debug builds, so pages can be edited without recompiling).
//!
//! Every response here (pages, assets, "not found") carries the same security headers, set by
//! [`secure`]: a Content-Security-Policy that runs scripts only from this server's files (no inline
//! script, no inline event handler, no `eval`), lets pages connect only to this server (its
//! WebSockets included), and forbids framing; `X-Frame-Options: DENY` for browsers that predate
//! `frame-ancestors`; `X-Content-Type-Options: nosniff`; `Referrer-Policy: no-referrer`. The one
//! exception: the lobby display may be framed by the origins of `[screens] frame_ancestors`
//! (a city's website), the public congestion pages by those of `[public] origins`.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::AppState;

#[derive(rust_embed::Embed)]
#[folder = "../display/"]
struct Display;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { page("status.html") }))
        .route("/screens/lobby/{site}", get(lobby_page))
        .route(
            "/screens/kiosk/{site}",
            get(|s, p| site_page(s, p, "kiosk.html")),
        )
        .route(
            "/screens/counter/{site}",
            get(|s, p| site_page(s, p, "counter.html")),
        )
        .route(
            "/screens/floor/{site}",
            get(|s, p| site_page(s, p, "floor.html")),
        )
        .route("/screens/kpi/{site}", get(kpi_page))
        .route("/public/congestion", get(public_page))
        .route("/public/congestion/{site}", get(public_site_page))
        .route("/book/{site}", get(|s, p| site_page(s, p, "book.html")))
        .route("/t/{token}", get(|| async { page("phone.html") }))
        .route("/assets/{*path}", get(asset))
        .layer(middleware::from_fn(secure))
}

/// Put in a response's extensions by a page that may be framed: the origins allowed to, joined
/// by spaces (`[screens] frame_ancestors`).
#[derive(Clone)]
struct FrameAncestors(String);

/// The policy without the parts that vary: scripts only from this server's files (pages load their
/// modules from /assets/), styles also inline (the pages' own `<style>` blocks and `style`
/// attributes), images and sounds also as `data:`, nothing else from anywhere else.
macro_rules! policy {
    () => {
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; media-src 'self' data:; object-src 'none'; base-uri 'none'; \
         form-action 'self'"
    };
}

/// Sets the security headers on every response of the screens. `no-referrer` matters: the phone
/// page's address holds its token.
async fn secure(request: Request, next: Next) -> Response {
    let connect = match same_host(request.headers()) {
        // CSP3 counts same-origin ws:/wss: as 'self', but Safari before 16 does not: name them.
        Some(host) => format!("'self' ws://{host} wss://{host}"),
        None => "'self'".to_owned(),
    };
    let mut response = next.run(request).await;
    let framed = response.extensions_mut().remove::<FrameAncestors>();
    let h = response.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let ancestors = match framed {
        Some(FrameAncestors(origins)) => origins,
        None => {
            h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            "'none'".to_owned()
        }
    };
    let csp = format!(
        "{}; connect-src {connect}; frame-ancestors {ancestors}",
        policy!()
    );
    // Both parts are checked (the host here, the origins by the configuration), so this holds;
    // were it not, the strictest policy.
    let csp = HeaderValue::from_str(&csp).unwrap_or_else(|_| {
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        HeaderValue::from_static(concat!(
            policy!(),
            "; connect-src 'self'; frame-ancestors 'none'"
        ))
    });
    h.insert(header::CONTENT_SECURITY_POLICY, csp);
    response
}

/// The request's `Host` when it is a host name or IPv4 address with an optional port, as a CSP
/// host source allows (no IPv6 literal); `None` otherwise.
fn same_host(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let label_ok = |l: &str| {
        !l.is_empty() && l.len() <= 63 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    (name.len() <= 253 && name.split('.').all(label_ok) && port_ok).then_some(host)
}

fn file(path: &str) -> Option<Response> {
    let file = Display::get(path)?;
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let mut response = (
        [(header::CONTENT_TYPE, mime.as_ref().to_owned())],
        file.data.into_owned(),
    )
        .into_response();
    // Kiosk PCs keep running on what they loaded; revalidate on reload.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(response)
}

fn page(name: &str) -> Response {
    file(name).unwrap_or_else(|| not_found("このページはありません / No such page"))
}

fn not_found(message: &str) -> Response {
    let body = format!(
        "<!doctype html><meta charset=utf-8><title>madoguchi</title>\
         <body style=\"font-family:sans-serif;padding:2rem\"><h1>{message}</h1>\
         <p><a href=\"/\">madoguchi</a></p></body>"
    );
    (StatusCode::NOT_FOUND, axum::response::Html(body)).into_response()
}

async fn site_page(State(app): State<AppState>, Path(site): Path<String>, name: &str) -> Response {
    let known = site.parse().ok().is_some_and(|id| app.site(&id).is_some());
    if known {
        page(name)
    } else {
        not_found("この拠点はありません / Unknown site")
    }
}

/// The lobby display: the page a city may embed in its website, so the origins configured in
/// `[screens] frame_ancestors` may frame it (an unknown site's "not found" may not).
async fn lobby_page(State(app): State<AppState>, site: Path<String>) -> Response {
    let origins = app.config().frame_ancestors.clone();
    framed_by(site_page(State(app), site, "lobby.html").await, &origins)
}

/// The congestion page for the city's website (every site): the `[public] origins` may frame it.
async fn public_page(State(app): State<AppState>) -> Response {
    framed_by(page("public.html"), &app.config().public.origins)
}

/// One site's congestion page, with its forecast calendar.
async fn public_site_page(State(app): State<AppState>, site: Path<String>) -> Response {
    let origins = app.config().public.origins.clone();
    framed_by(site_page(State(app), site, "public.html").await, &origins)
}

/// Lets `origins` frame a page that was found.
fn framed_by(mut response: Response, origins: &[String]) -> Response {
    if response.status().is_success() && !origins.is_empty() {
        response
            .extensions_mut()
            .insert(FrameAncestors(origins.join(" ")));
    }
    response
}

/// The analysts' page; `all` is the whole city.
async fn kpi_page(state: State<AppState>, Path(site): Path<String>) -> Response {
    if site == "all" {
        return page("kpi.html");
    }
    site_page(state, Path(site), "kpi.html").await
}

async fn asset(Path(path): Path<String>) -> Response {
    if path.contains("..") {
        return not_found("No such file");
    }
    file(&format!("assets/{path}")).unwrap_or_else(|| not_found("No such file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(value).unwrap());
        same_host(&headers).map(str::to_owned)
    }

    #[test]
    fn only_plain_hosts_become_websocket_sources() {
        for ok in ["127.0.0.1:8080", "madoguchi.city.example.jp", "lobby-pc:80"] {
            assert_eq!(host(ok).as_deref(), Some(ok));
        }
        for bad in [
            "",
            "a b",
            "x; script-src *",
            "example.jp:80:80",
            "example.jp:",
            "[::1]:8080",
            "example.jp.",
            "*.example.jp",
            "example.jp/path",
        ] {
            assert_eq!(host(bad), None, "{bad:?}");
        }
    }
}
