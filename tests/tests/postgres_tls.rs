//! TLS to PostgreSQL end to end, on a server the test starts that accepts TLS connections only
//! (`hostssl ... trust`, `hostnossl ... reject`), with a certificate for `localhost` signed by a
//! CA the test makes. The migration helpers, the tenant directory and the pools work with
//! `sslmode=verify-full`; a wrong CA and a wrong host name fail at start with an error naming the
//! host and the reason, and answer 503 problem+json at request time; `sslmode=disable` is
//! refused by the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{future::Future, path::Path, time::Duration};

use axum::{Router, body::Body, routing::get};
use http::Request;
use parapet_pool::{Db, DbError, PoolError, PoolLayer, TenantPools};
use parapet_postgres::{PgConfig, TlsErrorKind, describe, is_tls_failure, tls_error};
use parapet_tenant::{PgDirectory, StaticDirectory, Tenant, TenantId, TenantLayer, TenantRecord};
use parapet_tests::{certs::TestCa, cluster::TempCluster};
use tower::ServiceExt;

/// Every step is bounded: a TLS failure must be an error, never a hang.
async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(15), f)
        .await
        .unwrap_or_else(|_| panic!("{what} hung"))
}

fn url(host: &str, port: u16, db: &str, params: &str) -> String {
    format!("postgres://postgres@{host}:{port}/{db}?hostaddr=127.0.0.1&connect_timeout=5&{params}")
}

fn verify(mode: &str, ca: &Path) -> String {
    format!("sslmode={mode}&sslrootcert={}", ca.display())
}

/// The error of connecting to `url`, which must fail.
async fn connect_error(url: &str) -> tokio_postgres::Error {
    match bounded("connect", PgConfig::parse(url).unwrap().connect()).await {
        Ok(_) => panic!("connecting to {url} must fail"),
        Err(e) => e,
    }
}

async fn ssl_in_use(db: Db) -> Result<String, DbError> {
    let row = db
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await?;
    Ok(row.get::<_, bool>(0).to_string())
}

async fn plan(tenant: Tenant) -> String {
    tenant.plan().to_owned()
}

async fn fetch(app: &Router, path: &str) -> (u16, String, String) {
    let req = Request::get(path)
        .header("x-tenant-id", "acme")
        .body(Body::empty())
        .unwrap();
    let res = bounded(path, app.clone().oneshot(req)).await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = http_body_util::BodyExt::collect(res.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_only_server_with_verify_full_and_the_failures_that_name_host_and_reason() {
    let ca = TestCa::new("right");
    let (server_crt, server_key) = ca.issue_server("server", &["DNS:localhost"]);
    let other_ca = TestCa::new("wrong");
    let cluster = TempCluster::start_tls(&server_crt, &server_key);
    let port = cluster.port();
    let full = url("localhost", port, "crm", &verify("verify-full", &ca.cert()));

    // The migration helpers, over verify-full: create the database, migrate, seed a tenant.
    let config = PgConfig::parse(&full).unwrap();
    let created = bounded(
        "create_database_if_missing",
        parapet_migrate::create_database_if_missing(&config),
    )
    .await
    .unwrap_or_else(|e| panic!("create over verify-full: {}", describe(&e)));
    assert!(created);
    let client = bounded("connect", config.client()).await.unwrap();
    let report = bounded("migrate", parapet_migrate::Migrator::crm().run(&client))
        .await
        .unwrap();
    assert!(
        report.to_string().contains("4 migrations applied"),
        "{report}"
    );
    client
        .batch_execute("INSERT INTO tenants (id, name, plan) VALUES ('acme', 'Acme', 'pro')")
        .await
        .unwrap();
    let ssl: bool = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the migration connection is encrypted");

    // The directory and the pools, over verify-full, behind the layers.
    let pools = bounded("pools", TenantPools::builder(full.clone()).build())
        .await
        .unwrap();
    assert!(
        pools.status().budget > 1,
        "the budget was read from the server over TLS"
    );
    let app = Router::new()
        .route("/plan", get(plan))
        .route("/ssl", get(ssl_in_use))
        .layer(PoolLayer::new(pools))
        .layer(TenantLayer::new(PgDirectory::connect(&full).unwrap()));
    assert_eq!(fetch(&app, "/plan").await.2, "pro");
    let (status, _, body) = fetch(&app, "/ssl").await;
    assert_eq!((status, body.as_str()), (200, "true"));

    // A wrong CA: untrusted, named with its host, at every place parapet connects at start.
    let wrong_ca = url(
        "localhost",
        port,
        "crm",
        &verify("verify-full", &other_ca.cert()),
    );
    let e = connect_error(&wrong_ca).await;
    let tls = tls_error(&e).expect("a TLS error");
    assert_eq!(tls.host(), "localhost");
    assert_eq!(tls.kind(), TlsErrorKind::UntrustedCertificate);
    let text = describe(&e);
    assert!(
        text.contains("TLS with localhost failed") && text.contains("not signed by a trusted CA"),
        "{text}"
    );
    match bounded("pools", TenantPools::builder(wrong_ca.clone()).build()).await {
        Err(PoolError::Config(message)) => assert!(
            message.contains("localhost") && message.contains("not signed by a trusted CA"),
            "{message}"
        ),
        other => panic!("a wrong CA must fail the pool builder: {other:?}"),
    }
    let e = bounded(
        "create_database_if_missing",
        parapet_migrate::create_database_if_missing(&PgConfig::parse(&wrong_ca).unwrap()),
    )
    .await
    .unwrap_err();
    assert!(is_tls_failure(&e), "{}", describe(&e));
    // libpq: `require` with a root certificate checks the chain as verify-ca does.
    let require_wrong = url(
        "localhost",
        port,
        "crm",
        &verify("require", &other_ca.cert()),
    );
    let e = connect_error(&require_wrong).await;
    assert_eq!(
        tls_error(&e).map(|t| t.kind()),
        Some(TlsErrorKind::UntrustedCertificate)
    );

    // At request time (pools with a fixed budget build without connecting): 503 problem+json.
    let pools = TenantPools::builder(wrong_ca.clone())
        .budget(4)
        .build()
        .await
        .unwrap();
    let directory =
        StaticDirectory::new().tenant(TenantRecord::new(TenantId::parse("acme").unwrap()));
    let app = Router::new()
        .route("/ssl", get(ssl_in_use))
        .layer(PoolLayer::new(pools))
        .layer(TenantLayer::new(directory));
    let (status, content_type, body) = fetch(&app, "/ssl").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert!(
        !body.contains("localhost") && !body.contains("TLS"),
        "no internals: {body}"
    );
    let app = Router::new()
        .route("/plan", get(plan))
        .layer(TenantLayer::new(PgDirectory::connect(&wrong_ca).unwrap()));
    let (status, content_type, _) = fetch(&app, "/plan").await;
    assert_eq!(
        (status, content_type.as_str()),
        (503, "application/problem+json")
    );

    // A wrong host name: the certificate is for `localhost`, not `127.0.0.1`.
    let by_ip = url("127.0.0.1", port, "crm", &verify("verify-full", &ca.cert()));
    let e = connect_error(&by_ip).await;
    let tls = tls_error(&e).expect("a TLS error");
    assert_eq!(tls.host(), "127.0.0.1");
    assert_eq!(tls.kind(), TlsErrorKind::HostNameMismatch);
    match bounded("pools", TenantPools::builder(by_ip).build()).await {
        Err(PoolError::Config(message)) => assert!(
            message.contains("TLS with 127.0.0.1 failed")
                && message.contains("not valid for this host name"),
            "{message}"
        ),
        other => panic!("a wrong host name must fail the pool builder: {other:?}"),
    }
    // verify-ca checks the chain only, so the same connection is accepted.
    let ca_only = url("127.0.0.1", port, "crm", &verify("verify-ca", &ca.cert()));
    let client = bounded("connect", PgConfig::parse(&ca_only).unwrap().client())
        .await
        .unwrap_or_else(|e| panic!("verify-ca: {}", describe(&e)));
    client.simple_query("SELECT 1").await.unwrap();

    // `require` without a root certificate encrypts without checking (libpq's behaviour).
    let require = url("127.0.0.1", port, "crm", "sslmode=require");
    let client = bounded("connect", PgConfig::parse(&require).unwrap().client())
        .await
        .unwrap_or_else(|e| panic!("require: {}", describe(&e)));
    client.simple_query("SELECT 1").await.unwrap();

    // Plain text is refused by the server's pg_hba.conf.
    let plain = url("localhost", port, "crm", "sslmode=disable");
    let e = connect_error(&plain).await;
    let db = e
        .as_db_error()
        .unwrap_or_else(|| panic!("{}", describe(&e)));
    assert_eq!(db.code().code(), "28000", "{}", describe(&e));
    assert!(db.message().contains("no encryption"), "{}", db.message());
    assert!(!is_tls_failure(&e));

    drop(cluster);
}
