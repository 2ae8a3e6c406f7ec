//! Public reads: the list of sites, a site's catalog, and the live board snapshot.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::openapi::{NotFound, TooManyRequests, Unavailable};
use super::AppState;
use crate::config::ScreensConfig;
use crate::core::{
    BoardView, CounterId, CounterState, DispenserId, I18n, LifeEventId, PrinterId, ProcedureCode,
    Profile, QuestionId, QueueId, SiteId,
};

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sites))
        .routes(routes!(catalog))
}

/// The board, which screens without a live feed poll: rate-limited per address.
pub(super) fn polled() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(board))
}

#[derive(Debug, Serialize, ToSchema)]
struct SiteList {
    sites: Vec<SiteSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
struct SiteSummary {
    id: SiteId,
    name: I18n,
}

/// A site's catalog: everything a dispenser, a console or a lobby needs to label.
#[derive(Debug, Serialize, ToSchema)]
struct Catalog {
    site: CatalogSite,
    procedures: Vec<CatalogProcedure>,
    life_events: Vec<CatalogLifeEvent>,
    queues: Vec<CatalogQueue>,
    counters: Vec<CatalogCounter>,
    dispensers: Vec<CatalogDispenser>,
    screens: ScreensConfig,
}

#[derive(Debug, Serialize, ToSchema)]
struct CatalogSite {
    id: SiteId,
    name: I18n,
    /// An IANA time zone, e.g. `Asia/Tokyo`.
    timezone: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct CatalogProcedure {
    code: ProcedureCode,
    name: I18n,
    /// Typical service time in minutes.
    service_min: f64,
}

#[derive(Debug, Serialize, ToSchema)]
struct CatalogLifeEvent {
    id: LifeEventId,
    name: I18n,
    procedures: Vec<ProcedureCode>,
    questions: Vec<CatalogQuestion>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CatalogQuestion {
    id: QuestionId,
    text: I18n,
    /// Procedures added when the answer is yes.
    yes: Vec<ProcedureCode>,
    /// Procedures added when the answer is no.
    no: Vec<ProcedureCode>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CatalogQueue {
    id: QueueId,
    name: I18n,
    prefix: String,
    /// The inclusive number range, `[first, last]`.
    #[schema(min_items = 2, max_items = 2)]
    range: [u32; 2],
    procedures: Vec<ProcedureCode>,
}

#[derive(Debug, Serialize, ToSchema)]
struct CatalogCounter {
    id: CounterId,
    name: I18n,
    state: CounterState,
    profile: Profile,
}

#[derive(Debug, Serialize, ToSchema)]
struct CatalogDispenser {
    id: DispenserId,
    priority_button: bool,
    printer_agent: Option<PrinterId>,
}

/// The sites of the city.
#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "sites",
    responses(
        (status = 200, description = "Every site, with its names", body = SiteList),
        (status = 503, response = Unavailable),
    )
)]
async fn sites(State(app): State<AppState>) -> impl IntoResponse {
    let sites = app
        .sites()
        .map(|h| SiteSummary {
            id: h.config.id.clone(),
            name: h.config.name.clone(),
        })
        .collect();
    Json(SiteList { sites })
}

/// What a dispenser, a console or a lobby needs to label everything: names in ja and en.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/catalog",
    tag = "sites",
    params(("site" = String, Path, description = "A site id, e.g. `chuo`")),
    responses(
        (status = 200, description = "The site's catalog", body = Catalog),
        (status = 404, response = NotFound),
        (status = 503, response = Unavailable),
    )
)]
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
                .map(|v| CatalogCounter {
                    id: v.id,
                    name: v.name,
                    state: v.state,
                    profile: v.profile,
                })
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Json(Catalog {
        site: CatalogSite {
            id: c.id.clone(),
            name: c.name.clone(),
            timezone: c.timezone.name().to_owned(),
        },
        procedures: c
            .procedures
            .iter()
            .map(|p| CatalogProcedure {
                code: p.code.clone(),
                name: p.name.clone(),
                service_min: f64::from(p.service_s) / 60.0,
            })
            .collect(),
        life_events: c
            .life_events
            .iter()
            .map(|l| CatalogLifeEvent {
                id: l.id.clone(),
                name: l.name.clone(),
                procedures: l.procedures.clone(),
                questions: l
                    .questions
                    .iter()
                    .map(|q| CatalogQuestion {
                        id: q.id.clone(),
                        text: q.text.clone(),
                        yes: q.yes.clone(),
                        no: q.no.clone(),
                    })
                    .collect(),
            })
            .collect(),
        queues: c
            .queues
            .iter()
            .map(|q| CatalogQueue {
                id: q.id.clone(),
                name: q.name.clone(),
                prefix: q.prefix.clone(),
                range: [q.range.0, q.range.1],
                procedures: q.procedures.clone(),
            })
            .collect(),
        counters,
        dispensers: c
            .dispensers
            .iter()
            .map(|d| CatalogDispenser {
                id: d.id.clone(),
                priority_button: d.priority_button,
                printer_agent: d.printer_agent.clone(),
            })
            .collect(),
        screens: c.screens.clone(),
    }))
}

/// The live board: queues with their waits, counters with their tickets, recent calls, printers.
/// Without a token, rate-limited per client address.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/board",
    tag = "sites",
    params(("site" = String, Path, description = "A site id, e.g. `chuo`")),
    responses(
        (status = 200, description = "The board snapshot", body = BoardView),
        (status = 404, response = NotFound),
        (status = 429, response = TooManyRequests),
        (status = 503, response = Unavailable),
    )
)]
async fn board(
    State(app): State<AppState>,
    Path(site): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let handle = app.public_site(&site)?;
    let board = handle.read(|state| state.board()).await?;
    Ok(Json(board))
}
