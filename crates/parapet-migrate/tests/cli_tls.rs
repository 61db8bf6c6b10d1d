//! The `parapet-migrate` binary over TLS, against a server that accepts TLS connections only
//! (started by the test, with a certificate for `localhost` from a CA the test makes), and
//! `DATABASE_DIRECT_URL` winning over `DATABASE_URL`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};

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
    assert!(stdout.contains("done: 3 migrations applied"), "{stdout}");

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
