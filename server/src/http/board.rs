//! Public reads: the list of sites, a site's catalog, and the live board snapshot.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::error::ApiError;
use super::AppState;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/sites", get(sites))
        .route("/api/v1/sites/{site}/catalog", get(catalog))
}

/// The board, which screens without a live feed poll: rate-limited per address.
pub(super) fn polled() -> Router<AppState> {
    Router::new().route("/api/v1/sites/{site}/board", get(board))
}

async fn sites(State(app): State<AppState>) -> impl IntoResponse {
    let sites: Vec<_> = app
        .sites()
        .map(|h| json!({"id": h.config.id, "name": h.config.name}))
        .collect();
    Json(json!({ "sites": sites }))
}

/// What a dispenser, a console or a lobby needs to label everything: names in ja and en.
async fn catalog(
    State(app): State<AppState>,
    Path(site): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let handle = app.public_site(&site)?;
    let c = handle.config.clone();
    let counters = handle
        .read(|state| {
            state
                .counters
                .iter()
                .filter_map(|c| state.counter_view(&c.id))
                .map(
                    |v| json!({"id": v.id, "name": v.name, "state": v.state, "profile": v.profile}),
                )
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Json(json!({
        "site": {"id": c.id, "name": c.name, "timezone": c.timezone.name()},
        "procedures": c.procedures.iter().map(|p| json!({
            "code": p.code, "name": p.name, "service_min": f64::from(p.service_s) / 60.0,
        })).collect::<Vec<_>>(),
        "life_events": c.life_events.iter().map(|l| json!({
            "id": l.id,
            "name": l.name,
            "procedures": l.procedures,
            "questions": l.questions.iter().map(|q| json!({
                "id": q.id, "text": q.text, "yes": q.yes, "no": q.no,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "queues": c.queues.iter().map(|q| json!({
            "id": q.id, "name": q.name, "prefix": q.prefix, "range": [q.range.0, q.range.1],
            "procedures": q.procedures,
        })).collect::<Vec<_>>(),
        "counters": counters,
        "dispensers": c.dispensers.iter().map(|d| json!({
            "id": d.id, "priority_button": d.priority_button, "printer_agent": d.printer_agent,
        })).collect::<Vec<_>>(),
        "screens": c.screens,
    })))
}

async fn board(
    State(app): State<AppState>,
    Path(site): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let handle = app.public_site(&site)?;
    let board = handle.read(|state| state.board()).await?;
    Ok(Json(board))
}
