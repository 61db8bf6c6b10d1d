//! [`create_database_if_missing`]: the first step of an application that owns its database.

use parapet_postgres::PgConfig;
use tokio_postgres::error::SqlState;

/// Creates the database `config` names when it does not exist, connecting to the server's
/// `postgres` database to do so (with `config`'s TLS settings). Returns whether it created it.
/// Two processes starting at once are fine: the one that loses the race sees the database as
/// existing.
///
/// # Errors
///
/// The connection or `CREATE DATABASE` error (the role may lack `CREATEDB`);
/// [`parapet_postgres::describe`] puts it on one line, a TLS failure's host and reason included.
pub async fn create_database_if_missing(config: &PgConfig) -> Result<bool, tokio_postgres::Error> {
    let name = config.get_dbname().unwrap_or("postgres").to_owned();
    let mut admin = config.clone();
    admin.dbname("postgres");
    let (client, connection) = admin.connect().await?;
    let driver = tokio::spawn(connection);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    let created = if exists {
        false
    } else {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match client
            .batch_execute(&format!("CREATE DATABASE {quoted}"))
            .await
        {
            Ok(()) => true,
            // The loser of a race gets `duplicate_database`, or `unique_violation` when both
            // inserted into pg_database at the same moment.
            Err(e)
                if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
            {
                false
            }
            Err(e) => return Err(e),
        }
    };
    drop(client);
    let _ = driver.await;
    Ok(created)
}
