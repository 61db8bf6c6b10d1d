//! [`TenantRejection`]: every way a request can fail to get a tenant, as a typed error.

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;

use crate::{id::TenantIdError, problem::Problem};

/// Why a request was refused a tenant.
///
/// Answered as an RFC 9457 `application/problem+json` body; the detail never echoes what the
/// client sent and never carries internals (SQL, connection strings, key material).
///
/// | variant | status |
/// |---|---|
/// | [`Missing`](Self::Missing) | 400, or 401 with `WWW-Authenticate: Bearer` when a JWT resolver is in use |
/// | [`Malformed`](Self::Malformed), [`Ambiguous`](Self::Ambiguous) | 400 |
/// | [`InvalidToken`](Self::InvalidToken), [`Unauthenticated`](Self::Unauthenticated) | 401 with `WWW-Authenticate: Bearer` |
/// | [`NotGranted`](Self::NotGranted) | 403 |
/// | [`Suspended`](Self::Suspended), [`FeatureNotEnabled`](Self::FeatureNotEnabled) | 403 |
/// | [`Unknown`](Self::Unknown) | 404 |
/// | [`DirectoryUnavailable`](Self::DirectoryUnavailable) | 503 with `Retry-After` |
/// | [`MissingLayer`](Self::MissingLayer) | 500 (a wiring bug in the app) |
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TenantRejection {
    /// No resolver found a tenant in the request.
    #[error("the request does not name a tenant")]
    Missing {
        /// A JWT resolver is configured, so the answer is 401 with a bearer challenge.
        bearer: bool,
    },
    /// A resolver found a value that is not a valid tenant id.
    #[error("the tenant in the {origin} is not valid: {reason}")]
    Malformed {
        /// Where the value came from (`x-tenant-id header`, `host`, `path`, ...).
        origin: &'static str,
        /// What is wrong with it.
        reason: MalformedReason,
    },
    /// Two resolvers, or two copies of one header, name different tenants.
    #[error("the request names more than one tenant")]
    Ambiguous,
    /// The bearer token could not be verified.
    #[error("the bearer token is not valid: {0}")]
    InvalidToken(TokenError),
    /// The request names a tenant (header, host, path) but carries no credential, and the
    /// chain has an authority (a JWT resolver): only a credential may name the tenant.
    #[error("the request names a tenant but carries no credential for it")]
    Unauthenticated,
    /// The request names another tenant (header, host, path) than its credential grants.
    #[error("the credential does not grant the tenant the request names")]
    NotGranted,
    /// No tenant has this id.
    #[error("unknown tenant")]
    Unknown,
    /// The tenant exists but is suspended.
    #[error("the tenant is suspended")]
    Suspended,
    /// The tenant does not have the feature the route requires.
    #[error("the tenant's plan does not include this feature")]
    FeatureNotEnabled {
        /// The feature the route requires.
        feature: String,
    },
    /// The tenant directory did not answer in time or failed.
    #[error("the tenant directory is unavailable")]
    DirectoryUnavailable,
    /// The `Tenant` extractor ran on a route without `TenantLayer`.
    #[error("no tenant in the request extensions: is TenantLayer installed on this route?")]
    MissingLayer,
}

/// What is wrong with a tenant value a resolver found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MalformedReason {
    /// The value is not a valid tenant id.
    #[error(transparent)]
    Id(#[from] TenantIdError),
    /// The header value is not visible ASCII.
    #[error("the header value is not visible ASCII")]
    NotAscii,
    /// The host is not under the configured base domain, or has more than one label before it.
    #[error("the host is not a tenant subdomain of this service")]
    ForeignHost,
}

/// Why a bearer token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The `Authorization` header is not `Bearer <token>`, or the token is not a JWT.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not verify, or the algorithm is not one that is accepted (`none`).
    #[error("the signature does not verify")]
    Signature,
    /// The token has expired (`exp`).
    #[error("the token has expired")]
    Expired,
    /// The token is not valid yet (`nbf`).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The `aud` or `iss` claim is not the expected one.
    #[error("the token was not issued for this service")]
    WrongAudienceOrIssuer,
    /// The configured tenant claim is missing or not a string.
    #[error("the token has no tenant claim")]
    MissingClaim,
}

const BEARER: &str = "Bearer";

impl TenantRejection {
    /// The HTTP status this rejection answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Missing { bearer: true } | Self::InvalidToken(_) | Self::Unauthenticated => {
                StatusCode::UNAUTHORIZED
            }
            Self::Missing { bearer: false } | Self::Malformed { .. } | Self::Ambiguous => {
                StatusCode::BAD_REQUEST
            }
            Self::Unknown => StatusCode::NOT_FOUND,
            Self::Suspended | Self::FeatureNotEnabled { .. } | Self::NotGranted => {
                StatusCode::FORBIDDEN
            }
            Self::DirectoryUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::MissingLayer => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The human-readable text sent as the problem's `detail`.
    pub fn body_text(&self) -> String {
        match self {
            // Internal wiring detail stays in the logs.
            Self::MissingLayer => "The server could not determine the tenant.".to_owned(),
            other => {
                let mut text = other.to_string();
                if let Some(first) = text.get_mut(0..1) {
                    first.make_ascii_uppercase();
                }
                text.push('.');
                text
            }
        }
    }

    /// The RFC 9457 problem this rejection answers with.
    pub fn problem(&self) -> Problem {
        let (kind, title) = match self {
            Self::Missing { .. } => ("tenant-missing", "Tenant required"),
            Self::Malformed { .. } => ("tenant-malformed", "Malformed tenant"),
            Self::Ambiguous => ("tenant-ambiguous", "Ambiguous tenant"),
            Self::InvalidToken(_) => ("invalid-token", "Invalid bearer token"),
            Self::Unauthenticated => ("unauthenticated", "Authentication required"),
            Self::NotGranted => ("tenant-not-granted", "Tenant not granted"),
            Self::Unknown => ("tenant-unknown", "Unknown tenant"),
            Self::Suspended => ("tenant-suspended", "Tenant suspended"),
            Self::FeatureNotEnabled { .. } => ("feature-not-enabled", "Feature not enabled"),
            Self::DirectoryUnavailable => ("tenant-directory-unavailable", "Service unavailable"),
            Self::MissingLayer => ("internal", "Internal server error"),
        };
        let mut problem = Problem::new(self.status(), kind, title).detail(self.body_text());
        if self.status() == StatusCode::UNAUTHORIZED {
            problem = problem.www_authenticate(BEARER);
        }
        if let Self::DirectoryUnavailable = self {
            problem = problem.retry_after(1);
        }
        problem
    }
}

impl IntoResponse for TenantRejection {
    fn into_response(self) -> Response {
        if let Self::MissingLayer = self {
            tracing::error!("Tenant extractor used on a route without TenantLayer");
        }
        self.problem().into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let cases = [
            (TenantRejection::Missing { bearer: false }, 400),
            (TenantRejection::Missing { bearer: true }, 401),
            (
                TenantRejection::Malformed {
                    origin: "host",
                    reason: MalformedReason::ForeignHost,
                },
                400,
            ),
            (TenantRejection::Ambiguous, 400),
            (TenantRejection::InvalidToken(TokenError::Expired), 401),
            (TenantRejection::Unauthenticated, 401),
            (TenantRejection::NotGranted, 403),
            (TenantRejection::Unknown, 404),
            (TenantRejection::Suspended, 403),
            (
                TenantRejection::FeatureNotEnabled {
                    feature: "sso".into(),
                },
                403,
            ),
            (TenantRejection::DirectoryUnavailable, 503),
            (TenantRejection::MissingLayer, 500),
        ];
        for (rejection, status) in cases {
            assert_eq!(rejection.status().as_u16(), status, "{rejection:?}");
            let body = rejection.problem().body_json();
            assert_eq!(body["status"], status);
            assert!(
                body["type"]
                    .as_str()
                    .unwrap()
                    .starts_with("urn:parapet:problem:")
            );
            let detail = body["detail"].as_str().unwrap();
            assert!(
                detail.ends_with('.') && !detail.contains("TenantLayer"),
                "{detail}"
            );
            let res = rejection.into_response();
            assert_eq!(res.headers()["content-type"], "application/problem+json");
            assert_eq!(
                res.headers().contains_key("www-authenticate"),
                status == 401
            );
            assert_eq!(res.headers().contains_key("retry-after"), status == 503);
        }
    }
}
