//! A TLS-only `redis-server` of the test's own, on a free port, and `redis-cli` over TLS to
//! look into it. Killed on drop, also when the test panics.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::cluster::free_port;

/// A running `redis-server --port 0 --tls-port <port>`.
#[derive(Debug)]
pub struct TlsRedis {
    child: Child,
    port: u16,
    ca: PathBuf,
}

impl TlsRedis {
    /// Starts Redis serving TLS only (no plain-text port) on a free port of 127.0.0.1 with this
    /// server certificate and key (PEM); clients need not present a certificate. `ca` is what
    /// [`cli`](Self::cli) trusts.
    pub fn start(cert: &Path, key: &Path, ca: &Path) -> Self {
        let port = free_port();
        let mut child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--tls-port")
            .arg(port.to_string())
            .arg("--tls-cert-file")
            .arg(cert)
            .arg("--tls-key-file")
            .arg(key)
            .arg("--tls-ca-cert-file")
            .arg(ca)
            .args(["--tls-auth-clients", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-server ({e}); install it: apt-get install redis-server")
            });
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("redis-server --tls-port {port} exited ({status})");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("redis-server did not listen on {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            ca: ca.to_path_buf(),
        }
    }

    /// The TLS port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs `redis-cli --tls --cacert <ca> -h localhost -p <port> <args>` (the host name the
    /// certificate names, checked) and returns its output; panics when it fails.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .arg("--tls")
            .arg("--cacert")
            .arg(&self.ca)
            .args(["-h", "localhost", "-p", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("cannot run redis-cli ({e}); install it: apt-get install redis-tools")
            });
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success() && !stdout.starts_with("ERR") && !stdout.contains("Could not"),
            "redis-cli {args:?} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
