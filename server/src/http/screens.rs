//! The screens: plain HTML, CSS and JS modules from `display/`, embedded in the binary (read from
//! disk in debug builds, so pages can be edited without recompiling).

use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode};
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
        .route(
            "/screens/lobby/{site}",
            get(|s, p| site_page(s, p, "lobby.html")),
        )
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
        .route("/t/{token}", get(|| async { page("phone.html") }))
        .route("/assets/{*path}", get(asset))
}

/// Headers every page gets. `no-referrer` matters: the phone page's address holds its token.
fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; \
             style-src 'self' 'unsafe-inline'; script-src 'self' 'unsafe-inline'; media-src 'self' data:",
        ),
    );
    response
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
    Some(secure(response))
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
    secure((StatusCode::NOT_FOUND, axum::response::Html(body)).into_response())
}

async fn site_page(State(app): State<AppState>, Path(site): Path<String>, name: &str) -> Response {
    let known = site.parse().ok().is_some_and(|id| app.site(&id).is_some());
    if known {
        page(name)
    } else {
        not_found("この拠点はありません / Unknown site")
    }
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
