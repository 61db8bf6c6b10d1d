//! The `parapet-migrate` binary against a real PostgreSQL, and over TLS against a server that
//! accepts TLS connections only (started by the test, with a certificate for `localhost` from a
//! CA the test makes), with `DATABASE_DIRECT_URL` winning over `DATABASE_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::{TestDb, history_versions, require_postgres};
use parapet_testkit::{certs::TestCa, cluster::TempCluster};

fn cli(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_parapet-migrate"));
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("DATABASE_DIRECT_URL")
        .env_remove("RUST_LOG");
    command
}

fn run(command: &mut Command) -> (Output, String, String) {
    let output = command.output().expect("run parapet-migrate");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stdout, stderr)
}

/// Asserts a failure with exactly one line on stderr, and returns it.
fn one_line_failure(command: &mut Command) -> String {
    let (output, stdout, stderr) = run(command);
    assert!(!output.status.success(), "must fail; stdout: {stdout}");
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stdout, "");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(stderr.starts_with("parapet-migrate: error: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[tokio::test]
async fn up_then_status_against_a_fresh_database() {
    let db = TestDb::create("migrate").await;
    let url = db.conn_string();

    let (output, stdout, stderr) = run(&mut cli(&["status", "--database-url", &url]));
    assert!(output.status.success(), "status: {stderr}");
    assert!(stdout.contains("0001_crm_schema: pending"), "{stdout}");
    assert!(
        stdout.contains("0002_performance_indexes: pending"),
        "{stdout}"
    );

    let (output, stdout, stderr) = run(&mut cli(&["up", "--database-url", &url]));
    assert!(output.status.success(), "up: {stderr}");
    assert!(stdout.contains("applied 0001_crm_schema in "), "{stdout}");
    assert!(
        stdout.contains("applied 0002_performance_indexes (no transaction) in "),
        "{stdout}"
    );
    assert!(stdout.contains("done: 4 migrations applied"), "{stdout}");
    let client = db.client().await;
    assert_eq!(history_versions(&client).await, [1, 2, 3, 4]);

    // DATABASE_URL works too, and a second `up` has nothing to do.
    let (output, stdout, stderr) = run(cli(&["up"]).env("DATABASE_URL", &url));
    assert!(output.status.success(), "second up: {stderr}");
    assert_eq!(
        stdout.trim(),
        "nothing to do: all 4 migrations already applied"
    );

    let (output, stdout, stderr) = run(&mut cli(&["status", "--database-url", &url]));
    assert!(output.status.success(), "status: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("0001_crm_schema: applied at 20"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("0002_performance_indexes: applied at 20"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("0003_row_level_security: applied at 20"),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("0004_tenant_scoped_ids: applied at 20"),
        "{stdout}"
    );

    // The repository's migration directory is the same as the embedded one.
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../migrations");
    let (output, stdout, stderr) = run(&mut cli(&["status", "--dir", dir, "--database-url", &url]));
    assert!(output.status.success(), "status --dir: {stderr}");
    assert!(
        !stdout.contains("pending") && !stdout.contains("CHANGED"),
        "{stdout}"
    );
}

#[tokio::test]
async fn bad_input_gives_a_one_line_error() {
    require_postgres().await;

    let refused = one_line_failure(&mut cli(&[
        "up",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/nowhere?connect_timeout=5",
    ]));
    assert!(
        refused.contains("cannot connect to the database"),
        "{refused}"
    );

    let garbage = one_line_failure(&mut cli(&["status", "--database-url", "postgres://%%%"]));
    assert!(
        garbage.contains("cannot connect to the database"),
        "{garbage}"
    );

    let missing = one_line_failure(&mut cli(&["up"]));
    assert!(missing.contains("DATABASE_URL"), "{missing}");

    let db = TestDb::create("migrate").await;
    let no_dir = one_line_failure(&mut cli(&[
        "up",
        "--dir",
        "/nonexistent/parapet-migrations",
        "--database-url",
        &db.conn_string(),
    ]));
    assert!(
        no_dir.contains("cannot read migrations from /nonexistent"),
        "{no_dir}"
    );
    let client = db.client().await;
    assert!(
        !common::table_exists(&client, "parapet_migrations").await,
        "nothing ran"
    );

    // A usage error is clap's (exit code 2), not a panic.
    let (output, _, stderr) = run(&mut cli(&["sideways"]));
    assert_eq!(output.status.code(), Some(2), "{stderr}");
}

fn url(host: &str, port: u16, params: &str) -> String {
    format!(
        "postgres://postgres@{host}:{port}/postgres?hostaddr=127.0.0.1&connect_timeout=5&{params}"
    )
}

#[test]
fn up_over_verify_full_and_tls_failures_name_the_host_and_the_reason() {
    let ca = TestCa::new("cli-right");
    let (crt, key) = ca.issue_server("server", &["DNS:localhost"]);
    let other_ca = TestCa::new("cli-wrong");
    let cluster = TempCluster::start_tls(&crt, &key);
    let port = cluster.port();
    let root =
        |ca: &TestCa, mode: &str| format!("sslmode={mode}&sslrootcert={}", ca.cert().display());

    // A wrong CA and a wrong host name: one line naming the host and the reason.
    let (output, _, stderr) = run(&mut cli(&[
        "status",
        "--database-url",
        &url("localhost", port, &root(&other_ca, "verify-full")),
    ]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("TLS with localhost failed")
            && stderr.contains("not signed by a trusted CA"),
        "{stderr}"
    );
    let (output, _, stderr) = run(&mut cli(&[
        "status",
        "--database-url",
        &url("127.0.0.1", port, &root(&ca, "verify-full")),
    ]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("TLS with 127.0.0.1 failed")
            && stderr.contains("not valid for this host name"),
        "{stderr}"
    );
    // Plain text: the server refuses it.
    let (output, _, stderr) = run(&mut cli(&[
        "status",
        "--database-url",
        &url("localhost", port, "sslmode=disable"),
    ]));
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no encryption"), "{stderr}");

    // DATABASE_DIRECT_URL wins over DATABASE_URL (here a port nothing listens on, as a
    // transaction-mode pooler's URL would be unusable for migrations).
    let full = url("localhost", port, &root(&ca, "verify-full"));
    let (output, stdout, stderr) = run(cli(&["up"])
        .env(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5",
        )
        .env("DATABASE_DIRECT_URL", &full));
    assert!(output.status.success(), "up: {stderr}");
    assert!(stdout.contains("done: 4 migrations applied"), "{stdout}");

    // `--database-url` on the command line wins over both variables.
    let (output, _, stderr) = run(cli(&[
        "status",
        "--database-url",
        "postgres://postgres@127.0.0.1:1/postgres?connect_timeout=5",
    ])
    .env("DATABASE_DIRECT_URL", &full));
    assert_eq!(output.status.code(), Some(1), "the flag must win: {stderr}");
    let (output, stdout, stderr) = run(cli(&["status"]).env("DATABASE_URL", &full));
    assert!(output.status.success(), "status: {stderr}");
    assert!(stdout.contains("0001_crm_schema: applied at"), "{stdout}");

    drop(cluster);
}
