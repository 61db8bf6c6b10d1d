//! Pool errors and the rejection a client sees.

use axum_core::response::{IntoResponse, Response};
use http::StatusCode;
use parapet_tenant::problem::Problem;

/// Why a connection could not be checked out.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PoolError {
    /// No connection became free within the wait timeout (the pool is at its maximum and busy).
    #[error("no connection became available within the wait timeout")]
    Timeout,
    /// The database server's connection budget is used up and no idle connection could be
    /// closed in time.
    #[error("the database server's connection budget is exhausted")]
    BudgetExhausted,
    /// The database did not accept a connection (down, restarting, unreachable, too slow).
    #[error("the database is unavailable")]
    Unavailable(#[source] Option<tokio_postgres::Error>),
    /// The configuration is wrong: bad connection string, authentication failed, unknown database.
    #[error("database configuration error: {0}")]
    Config(String),
    /// The isolation mode needs something the tenant does not have (a database of its own).
    #[error("tenant {0} has no database of its own, which database-per-tenant isolation requires")]
    NoDedicatedDatabase(String),
}

impl PoolError {
    /// Sorts a connection error: authentication and configuration failures are not outages.
    pub(crate) fn from_connect(e: tokio_postgres::Error) -> Self {
        use tokio_postgres::error::SqlState;
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::INVALID_PASSWORD
                || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
                || *code == SqlState::INVALID_CATALOG_NAME
            {
                return Self::Config(format!("{}: {}", code.code(), db.message()));
            }
        }
        Self::Unavailable(Some(e))
    }

    /// The status a client sees.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout | Self::BudgetExhausted | Self::Unavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::Config(_) | Self::NoDedicatedDatabase(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for PoolError {
    /// 503 with `Retry-After` for a busy or unavailable database, a generic 500 for configuration
    /// errors; the details go to the log, never to the client.
    fn into_response(self) -> Response {
        let status = self.status();
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "database configuration error");
            Problem::new(status, "internal", "Internal server error")
                .detail("The server could not reach its database.")
                .into_response()
        } else {
            tracing::warn!(error = %self, "database unavailable");
            Problem::new(status, "database-unavailable", "Service unavailable")
                .detail("The database is busy or unavailable; try again shortly.")
                .retry_after(1)
                .into_response()
        }
    }
}

/// A query failed. Answered as a generic 500 (503 when the connection was lost); the SQL error
/// goes to the log only.
#[derive(Debug, thiserror::Error)]
#[error("database query failed: {message}{}", hint.map(|h| format!(" ({h})")).unwrap_or_default())]
pub struct DbError {
    message: String,
    hint: Option<&'static str>,
    #[source]
    source: tokio_postgres::Error,
}

impl DbError {
    pub(crate) fn new(source: tokio_postgres::Error) -> Self {
        let message = match source.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => source.to_string(),
        };
        Self {
            message,
            hint: None,
            source,
        }
    }

    /// Adds what the operator should do about it (logged with the error, never sent to a client).
    pub(crate) fn with_hint(mut self, hint: &'static str) -> Self {
        self.hint = Some(hint);
        self
    }

    /// What the operator should do about this error, when parapet can tell: for example, use
    /// transaction scope when a transaction-mode pooler moved a statement to a server connection
    /// without the session's prepared statements or tenant setting.
    pub fn hint(&self) -> Option<&str> {
        self.hint
    }

    /// The underlying driver error (for its `SqlState` code, say).
    pub fn source_error(&self) -> &tokio_postgres::Error {
        &self.source
    }

    /// The SQLSTATE code, when the server answered with an error.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.source.code()
    }
}

impl IntoResponse for DbError {
    fn into_response(self) -> Response {
        tracing::error!(error = %self, "database query failed");
        if self.source.is_closed() {
            return PoolError::Unavailable(None).into_response();
        }
        Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal server error",
        )
        .detail("The request could not be completed.")
        .into_response()
    }
}

/// Why the [`Db`](crate::Db) extractor refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DbRejection {
    /// No connection could be checked out.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// The route has no `PoolLayer`, or no `TenantLayer` in front of it.
    #[error("Db extractor used without {0} on the route")]
    MissingLayer(&'static str),
}

impl IntoResponse for DbRejection {
    fn into_response(self) -> Response {
        match self {
            Self::Pool(e) => e.into_response(),
            Self::MissingLayer(_) => {
                tracing::error!(error = %self, "misconfigured route");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "Internal server error",
                )
                .detail("The server could not reach its database.")
                .into_response()
            }
        }
    }
}
