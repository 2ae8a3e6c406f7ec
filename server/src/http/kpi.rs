//! Analysts: the stay-time KPI with the city's targets, and the visits as CSV.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{require, Scope};
use super::error::ApiError;
use super::openapi::{Forbidden, NotFound, Unauthorized, Unavailable, Unprocessable};
use super::AppState;
use crate::config::{Role, SiteConfig};
use crate::core::{LifeEventId, ProcedureCode, SiteId, Target, VisitRecord};
use crate::kpi::{self, GroupBy};
use crate::projection::KpiFilter;

pub(super) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(kpi))
        .routes(routes!(visits_csv))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct KpiQuery {
    /// A local date (`2026-11-01`) or an RFC 3339 instant: visits that arrived from then.
    from: Option<String>,
    /// A local date (its whole day included) or an RFC 3339 instant.
    to: Option<String>,
    life_event: Option<LifeEventId>,
    procedure: Option<ProcedureCode>,
    #[param(value_type = Option<GroupBy>, inline)]
    group_by: Option<String>,
}

/// The KPI reply: the figures with the question that was asked.
#[derive(Debug, Serialize, ToSchema)]
struct KpiReply {
    /// The site, or `all`.
    site: String,
    #[schema(value_type = Option<String>, format = DateTime)]
    from: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    to: Option<DateTime<Utc>>,
    life_event: Option<LifeEventId>,
    procedure: Option<ProcedureCode>,
    group_by: Option<String>,
    /// The IANA time zone of the dates and groups.
    timezone: String,
    #[serde(flatten)]
    report: kpi::Report,
    /// Bookings whose slot starts in the period.
    reservations: crate::projection::ReservationCounts,
    /// Completed visits of the period whose `visit.completed` webhook reached the
    /// counter-support system (a subscriber with `handover`): the plan's usage count.
    handed_over: u64,
}

/// `YYYY-MM-DD` (a local calendar day; `to` includes its whole day) or an RFC 3339 instant.
fn parse_bound(name: &str, value: &str, tz: Tz, end: bool) -> Result<DateTime<Utc>, ApiError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(t.to_utc());
    }
    let day = NaiveDate::parse_from_str(value, "%Y-%m-%d").map_err(|_| {
        ApiError::invalid_query(format!(
            "{name} must be a date (YYYY-MM-DD) or an RFC 3339 time, not {value:?}"
        ))
    })?;
    let day = if end {
        day.succ_opt().unwrap_or(day)
    } else {
        day
    };
    day_start(day, tz).ok_or_else(|| ApiError::invalid_query(format!("{name}: no such local time")))
}

/// The first instant of a local calendar day.
fn day_start(day: NaiveDate, tz: Tz) -> Option<DateTime<Utc>> {
    tz.from_local_datetime(&day.and_time(chrono::NaiveTime::MIN))
        .earliest()
        .map(|t| t.to_utc())
}

/// The range a KPI covers, at most `max_days` days long: a missing `to` is `from` plus the cap
/// (or, without `from` either, the end of today, local), a missing `from` is `to` less the cap.
/// An explicit range longer than the cap is refused.
fn kpi_window(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    max_days: u32,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), ApiError> {
    let cap = chrono::Duration::days(i64::from(max_days));
    let plus = |t: DateTime<Utc>| {
        t.checked_add_signed(cap)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    };
    let minus = |t: DateTime<Utc>| {
        t.checked_sub_signed(cap)
            .unwrap_or(DateTime::<Utc>::MIN_UTC)
    };
    let (from, to) = match (from, to) {
        (Some(f), Some(t)) => (f, t),
        (Some(f), None) => (f, plus(f)),
        (None, Some(t)) => (minus(t), t),
        (None, None) => {
            let today = now.with_timezone(&tz).date_naive();
            let end = today
                .succ_opt()
                .and_then(|d| day_start(d, tz))
                .unwrap_or(now);
            (minus(end), end)
        }
    };
    if to - from > cap {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "range_too_large",
            format!(
                "a KPI covers at most {max_days} days ([limits] kpi_max_days); ask for a shorter range or several"
            ),
        ));
    }
    Ok((from, to))
}

/// The site (or `all`) an analyst asks about, its time zone, and the filter of the range.
fn scope(
    app: &AppState,
    site: &str,
    headers: &HeaderMap,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<SiteId>, Tz, KpiFilter), ApiError> {
    let (id, tz) = if site == "all" {
        require(app.config(), headers, Scope::City, &[Role::Analyst])?;
        let tz = app
            .sites()
            .next()
            .map_or(chrono_tz::Asia::Tokyo, |h| h.config.timezone);
        (None, tz)
    } else {
        let (id, handle) = app.site_for(site, headers, &[Role::Analyst])?;
        (Some(id), handle.config.timezone)
    };
    let from = from
        .map(|v| parse_bound("from", v, tz, false))
        .transpose()?;
    let to = to.map(|v| parse_bound("to", v, tz, true)).transpose()?;
    if let (Some(f), Some(t)) = (from, to) {
        if f >= t {
            return Err(ApiError::invalid_query("from must be before to"));
        }
    }
    let filter = KpiFilter {
        site: id.as_ref().map(SiteId::to_string),
        from,
        to,
        life_event: None,
        procedure: None,
    };
    Ok((id, tz, filter))
}

/// The tickets handed over at `site` (every site for `None`) whose visits may have arrived
/// between `from` and `to` (a visit ends on its business day).
async fn handovers(
    app: &AppState,
    site: Option<&SiteId>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<std::collections::HashSet<String>, ApiError> {
    let Some(hooks) = app.hooks().filter(|h| h.any()) else {
        return Ok(Default::default());
    };
    let sites: Vec<SiteId> = match site {
        Some(id) => vec![id.clone()],
        None => app.sites().map(|h| h.config.id.clone()).collect(),
    };
    let until = to + chrono::Duration::days(1);
    hooks
        .store()
        .handovers(&sites, from.timestamp_millis(), until.timestamp_millis())
        .await
        .map_err(ApiError::unavailable)
}

/// Stay, wait and service time and satisfaction against the fiscal year's targets.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/kpi",
    tag = "kpi",
    security(("bearer" = ["analyst"])),
    params(("site" = String, Path, description = "A site id (`chuo`), or `all` for the whole city"), KpiQuery),
    responses(
        (status = 200, description = "The figures", body = KpiReply),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn kpi(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    query: Result<Query<KpiQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let (id, tz, mut filter) = scope(&app, &site, &headers, q.from.as_deref(), q.to.as_deref())?;
    let group_by = q
        .group_by
        .as_deref()
        .map(str::parse::<GroupBy>)
        .transpose()
        .map_err(ApiError::invalid_query)?;
    filter.life_event = q.life_event.as_ref().map(ToString::to_string);
    filter.procedure = q.procedure.as_ref().map(ToString::to_string);
    // The fiscal year is that of an explicit `from`, else that of the first visit.
    let fiscal_year = filter
        .from
        .map(|f| kpi::fiscal_year(f.with_timezone(&tz).date_naive()));
    let (from, to) = kpi_window(
        filter.from,
        filter.to,
        app.config().limits.kpi_max_days,
        tz,
        Utc::now(),
    )?;
    (filter.from, filter.to) = (Some(from), Some(to));
    app.settled(id.as_ref()).await;
    // Streamed from a read-only connection: neither the projection's writer nor every visit in
    // memory.
    let fold = kpi::Fold::new(group_by, tz);
    let with_steps = fold.needs_steps();
    let handovers = handovers(&app, id.as_ref(), from, to).await?;
    let (fold, handed_over) = app
        .store()
        .fold_visits(
            filter,
            with_steps,
            (fold, 0u64),
            move |(fold, handed), v| {
                fold.add(v);
                if v.outcome == crate::core::TicketStatus::Done
                    && handovers.contains(v.ticket.as_str())
                {
                    *handed += 1;
                }
            },
        )
        .await
        .map_err(ApiError::unavailable)?;
    let fy = fiscal_year.or_else(|| {
        fold.first_arrival()
            .map(|a| kpi::fiscal_year(a.with_timezone(&tz).date_naive()))
    });
    let target = fy.and_then(|fy| {
        app.config().kpi_targets.iter().find(|t| {
            t.fiscal_year == fy
                && t.site.as_deref() == id.as_ref().map(SiteId::as_str)
                && t.life_event.as_deref() == q.life_event.as_ref().map(LifeEventId::as_str)
        })
    });
    let report = fold.finish(fy, target);
    let reservations = app
        .store()
        .reservation_counts(id.as_ref().map(SiteId::to_string), from, to, Utc::now())
        .await
        .map_err(ApiError::unavailable)?;
    Ok(Json(KpiReply {
        reservations,
        handed_over,
        site,
        from: Some(from),
        to: Some(to),
        life_event: q.life_event,
        procedure: q.procedure,
        group_by: q.group_by,
        timezone: tz.name().to_owned(),
        report,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct CsvQuery {
    /// A local date (`2026-11-01`) or an RFC 3339 instant: visits that arrived from then.
    from: Option<String>,
    /// A local date (its whole day included) or an RFC 3339 instant.
    to: Option<String>,
}

/// Steps with their own columns; later steps of a longer visit are counted in `steps` only.
const CSV_STEPS: usize = 3;

fn csv_header() -> Vec<String> {
    let mut h: Vec<String> = [
        "ticket_id",
        "site",
        "site_name",
        "business_day",
        "fiscal_year",
        "number",
        "life_event",
        "life_event_name",
        "procedures",
        "procedure_names",
        "priority",
        "arrival",
        "departure",
        "outcome",
        "cancel_reason",
        "stay_s",
        "wait_s",
        "service_s",
        "steps",
        "satisfaction",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in 1..=CSV_STEPS {
        for f in ["queue", "counter", "wait_s", "calls", "service_s"] {
            h.push(format!("step{n}_{f}"));
        }
    }
    h
}

fn csv_row(v: &VisitRecord, site: Option<&SiteConfig>, tz: Tz) -> Vec<String> {
    let local = |t: DateTime<Utc>| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
    let secs = |s: f64| format!("{s:.0}");
    let name_of_procedure = |code: &ProcedureCode| {
        site.and_then(|s| s.procedure(code))
            .map_or_else(|| code.to_string(), |p| p.name.ja.clone())
    };
    let mut row = vec![
        v.ticket.to_string(),
        v.site.clone(),
        site.map(|s| s.name.ja.clone()).unwrap_or_default(),
        v.day.to_string(),
        // Like the KPI: the fiscal year of the local arrival date (a 00:10 visit on 1 April
        // belongs to the new year even though its business day started the day before).
        kpi::fiscal_year(v.arrival.with_timezone(&tz).date_naive()).to_string(),
        v.number.to_string(),
        v.life_event
            .as_ref()
            .map(|l| l.to_string())
            .unwrap_or_default(),
        v.life_event
            .as_ref()
            .and_then(|l| site.and_then(|s| s.life_event(l)))
            .map(|l| l.name.ja.clone())
            .unwrap_or_default(),
        v.procedures
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(" "),
        v.procedures
            .iter()
            .map(name_of_procedure)
            .collect::<Vec<_>>()
            .join("、"),
        u8::from(v.priority).to_string(),
        local(v.arrival),
        local(v.departure),
        v.outcome.as_str().to_owned(),
        v.cancel_reason
            .map(|r| {
                serde_json::to_value(r)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            })
            .unwrap_or_default(),
        secs(v.stay_s),
        secs(v.wait_s),
        secs(v.service_s),
        v.steps.len().to_string(),
        v.satisfaction.map(|s| s.to_string()).unwrap_or_default(),
    ];
    for n in 0..CSV_STEPS {
        match v.steps.get(n) {
            Some(s) => row.extend([
                match &s.target {
                    Target::Queue(q) => q.to_string(),
                    Target::Counter(c) => format!("counter:{c}"),
                },
                s.counter
                    .as_ref()
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
                secs(s.wait_s),
                s.calls.to_string(),
                secs(s.service_s),
            ]),
            None => row.extend(std::iter::repeat_n(String::new(), 5)),
        }
    }
    row
}

fn csv_line(fields: &[String]) -> Vec<u8> {
    let mut w = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    w.write_record(fields).expect("writing to memory");
    w.into_inner().expect("writing to memory")
}

/// A CSV download for analysts: the body as given (UTF-8 with a byte order mark), named `filename`.
pub(super) fn csv_response(filename: &str, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// One row per visit, UTF-8 with a BOM (Excel opens the Japanese correctly), streamed: rows go
/// out as they are read, so a year of a busy office never sits in memory.
#[utoipa::path(
    get,
    path = "/api/v1/sites/{site}/visits.csv",
    tag = "kpi",
    security(("bearer" = ["analyst"])),
    params(("site" = String, Path, description = "A site id (`chuo`), or `all` for the whole city"), CsvQuery),
    responses(
        (status = 200, description = "One row per ended visit; UTF-8 with a byte order mark, CRLF line ends", body = String, content_type = "text/csv; charset=utf-8"),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 422, response = Unprocessable),
        (status = 503, response = Unavailable),
    )
)]
async fn visits_csv(
    State(app): State<AppState>,
    Path(site): Path<String>,
    headers: HeaderMap,
    query: Result<Query<CsvQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::invalid_query(e.body_text()))?;
    let (id, tz, filter) = scope(&app, &site, &headers, q.from.as_deref(), q.to.as_deref())?;
    app.settled(id.as_ref()).await;
    let sites: Vec<std::sync::Arc<SiteConfig>> = app.sites().map(|h| h.config.clone()).collect();
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
    let mut first = b"\xEF\xBB\xBF".to_vec();
    first.extend(csv_line(&csv_header()));
    let _ = tx.send(first).await;
    let store = app.store().clone();
    let stall = app.config().limits.export_stall;
    let dropped = app.metrics().exports_dropped.clone();
    // Set when the export stops before its end: the body then ends with an error rather than
    // looking complete.
    let broken = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Handle::current();
    let broken_rows = broken.clone();
    let broken_export = broken.clone();
    tokio::spawn(async move {
        let sink = tx.clone();
        let result = store
            .export_visits(filter, move |v| {
                let config = sites
                    .iter()
                    .find(|s| s.id.as_str() == v.site)
                    .map(|s| s.as_ref());
                let line = csv_line(&csv_row(&v, config, tz));
                // In the exporter's blocking thread: wait for room, but not for ever. A client
                // that reads nothing for `stall` loses its export, and the read transaction ends
                // (it would hold the WAL from checkpointing).
                match runtime.block_on(tokio::time::timeout(stall, sink.send(line))) {
                    Ok(Ok(())) => true,
                    // The client went away: stop reading.
                    Ok(Err(_)) => false,
                    Err(_) => {
                        dropped.inc();
                        tracing::warn!(
                            stall_s = stall.as_secs(),
                            "CSV export dropped: its client stopped reading"
                        );
                        broken_rows.store(true, Ordering::SeqCst);
                        false
                    }
                }
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "CSV export failed part way");
            broken_export.store(true, Ordering::SeqCst);
        }
        drop(tx);
    });
    let stream = futures_util::stream::unfold(rx, move |mut rx| {
        let broken = broken.clone();
        async move {
            match rx.recv().await {
                Some(chunk) => Some((Ok(chunk), rx)),
                // Once: the connection is cut instead of ending a partial file cleanly.
                None if broken.swap(false, Ordering::SeqCst) => Some((
                    Err(std::io::Error::other("the CSV export stopped part way")),
                    rx,
                )),
                None => None,
            }
        }
    });
    Ok(csv_response(
        &format!("madoguchi-visits-{site}.csv"),
        Body::from_stream(stream),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKYO: Tz = chrono_tz::Asia::Tokyo;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn an_explicit_range_longer_than_the_cap_is_refused() {
        let from = parse_bound("from", "2020-01-01", TOKYO, false).unwrap();
        let to = parse_bound("to", "2026-12-01", TOKYO, true).unwrap();
        let e = kpi_window(Some(from), Some(to), 400, TOKYO, Utc::now()).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (422, "range_too_large"));
        assert!(e.message.contains("400 days"), "{}", e.message);
        // Exactly the cap is allowed.
        let to = from + chrono::Duration::days(400);
        assert_eq!(
            kpi_window(Some(from), Some(to), 400, TOKYO, Utc::now()).unwrap(),
            (from, to)
        );
    }

    #[test]
    fn a_missing_bound_makes_a_window_of_the_cap() {
        let now = at("2026-12-01T20:00:00Z"); // 2 December, 05:00 in Tokyo
        let end = at("2026-12-02T15:00:00Z"); // 3 December, 00:00 in Tokyo
        let cap = chrono::Duration::days(400);
        assert_eq!(
            kpi_window(None, None, 400, TOKYO, now).unwrap(),
            (end - cap, end)
        );
        let from = at("2020-01-01T00:00:00Z");
        assert_eq!(
            kpi_window(Some(from), None, 400, TOKYO, now).unwrap(),
            (from, from + cap)
        );
        assert_eq!(
            kpi_window(None, Some(end), 400, TOKYO, now).unwrap(),
            (end - cap, end)
        );
        // Far bounds do not overflow.
        let far = DateTime::<Utc>::MAX_UTC;
        assert!(kpi_window(Some(far), None, 400, TOKYO, now).is_ok());
    }
}
