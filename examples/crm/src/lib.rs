//! parapet's demo: a multi-tenant CRM API with the whole stack.
//!
//! ```sh
//! cargo run --release -p example-crm
//! curl -H 'X-Tenant-Id: acme' 'http://127.0.0.1:3000/api/leads?limit=5'
//! ```
//!
//! [`app::build`] starts the demo from variables: [`setup::prepare`] creates, migrates and seeds
//! the database, [`api::router`] is the app, [`ready::Readiness`] answers `/readyz`.

pub mod api;
pub mod app;
pub mod problem;
pub mod ready;
pub mod setup;

/// Start-up errors.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
