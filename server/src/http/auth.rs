//! Bearer tokens and roles.

use axum::http::{header, HeaderMap, StatusCode};

use super::error::ApiError;
use crate::config::{Config, Role, TokenGrant};
use crate::core::SiteId;

/// Compares without an early exit, so response time does not tell how much of a token matched.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request acts on, for tokens limited to some sites.
#[derive(Debug, Clone, Copy)]
pub(super) enum Scope<'a> {
    /// Not tied to a site (printer agents).
    Any,
    Site(&'a SiteId),
    /// Every site at once (`site=all`): only tokens valid everywhere.
    City,
}

/// The bearer token of a request, if it has the right shape.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The grant of a configured token: its digest compared with every configured one in full.
fn lookup<'a>(config: &'a Config, token: &str) -> Option<&'a TokenGrant> {
    let digest = crate::config::sha256(token);
    let mut grant = None;
    for (known, g) in &config.tokens {
        if same(known, &digest) {
            grant = Some(g);
        }
    }
    grant
}

/// The grant of the request's token, if it carries a valid one (any role).
pub(super) fn grant<'a>(config: &'a Config, headers: &HeaderMap) -> Option<&'a TokenGrant> {
    lookup(config, bearer(headers)?)
}

/// Checks that the request carries a token of one of `roles`, valid for `scope`.
pub(super) fn require<'a>(
    config: &'a Config,
    headers: &HeaderMap,
    scope: Scope<'_>,
    roles: &[Role],
) -> Result<&'a TokenGrant, ApiError> {
    let unauthorized = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", m);
    if !headers.contains_key(header::AUTHORIZATION) {
        return Err(unauthorized(
            "トークンが必要です / a bearer token is required",
        ));
    }
    let token =
        bearer(headers).ok_or_else(|| unauthorized("Authorization must be `Bearer <token>`"))?;
    let grant =
        lookup(config, token).ok_or_else(|| unauthorized("トークンが無効です / unknown token"))?;
    if !roles.contains(&grant.role) {
        let wanted: Vec<String> = roles.iter().map(Role::to_string).collect();
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "この操作の権限がありません / role {} may not do this (needs {})",
                grant.role,
                wanted.join(" or ")
            ),
        ));
    }
    match (scope, &grant.sites) {
        (Scope::Site(site), Some(allowed)) if !allowed.contains(site) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this token is not valid for site {site}"),
            ));
        }
        (Scope::City, Some(_)) => {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this token is limited to some sites; the whole city needs a token for every site",
            ));
        }
        _ => {}
    }
    Ok(grant)
}

/// Checks that a counter token bound to some counters may act at `counter`.
pub(super) fn at_counter(
    grant: &TokenGrant,
    counter: &crate::core::CounterId,
) -> Result<(), ApiError> {
    match &grant.counters {
        Some(allowed) if !allowed.contains(counter) => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "この窓口の操作権限がありません / this token is not valid for counter {counter}"
            ),
        )),
        _ => Ok(()),
    }
}

/// The token's holder as the audit trail records it: name and role, never the token.
pub(super) fn operator(grant: &TokenGrant) -> crate::core::Operator {
    crate::core::Operator {
        name: grant.name.clone(),
        role: grant.role.to_string(),
    }
}
