//! A checkout's session lifecycle: entering the tenant's context when a connection is checked
//! out, and leaving it (the reset) before the connection goes back to the pool.

use std::time::Duration;

use deadpool::managed::Object as DpObject;
use parapet_tenant::TenantId;
use tokio_postgres::types::ToSql;

use crate::{Isolation, PoolError, manager::Object};

/// Ends whatever transaction the handler left open (a warning otherwise) and clears the tenant
/// setting, `search_path` and any `SET` it ran.
const RESET: &str = "ROLLBACK; RESET ALL";

/// Applies `tenant`'s isolation to a freshly checked-out connection, within `timeout`.
///
/// A connection that cannot be set up is closed, not returned to the pool.
pub(crate) async fn enter(
    obj: Object,
    isolation: &Isolation,
    tenant: &TenantId,
    timeout: Duration,
) -> Result<Object, PoolError> {
    let Some((name, value)) = isolation.setting_for(tenant) else {
        return Ok(obj);
    };
    let params: [&(dyn ToSql + Sync); 2] = [&name, &value];
    let set = obj.query_one("SELECT set_config($1, $2, false)", &params);
    match tokio::time::timeout(timeout, set).await {
        Ok(Ok(_)) => Ok(obj),
        Ok(Err(e)) => {
            close(obj);
            Err(PoolError::from_connect(e))
        }
        Err(_) => {
            close(obj);
            Err(PoolError::Unavailable(None))
        }
    }
}

/// Resets the connection in a background task and then returns it to the pool; a connection
/// that cannot be reset within `timeout` (or outside a Tokio runtime) is closed instead.
pub(crate) fn leave(obj: Object, timeout: Duration) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        // No runtime to reset on: close the connection rather than return it dirty.
        close(obj);
        return;
    };
    handle.spawn(async move {
        match tokio::time::timeout(timeout, obj.batch_execute(RESET)).await {
            Ok(Ok(())) => drop(obj),
            _ => {
                tracing::warn!("could not reset a connection; closing it");
                close(obj);
            }
        }
    });
}

/// Takes the connection out of its pool, which closes it (and frees its budget permit).
pub(crate) fn close(obj: Object) {
    let _ = DpObject::take(obj);
}
