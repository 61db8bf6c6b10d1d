//! `redis-server` processes of a test's own: one server on a port of its own, or a Redis
//! Cluster of three masters, killed (and their files removed) on drop. They need the
//! `redis-server` and `redis-cli` programs (Debian packages redis-server and redis-tools).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, free_ports, unique_prefix};

/// A `redis-server` child process started by a test on its own port, killed on drop.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    args: Vec<String>,
    /// Its working directory, of its own: a replica writes the data it receives from its primary
    /// to `dump.rdb` there (even with `--save ""`), and a server loads that file when it starts.
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` on `port` (no persistence) with `extra` arguments, and waits
    /// until it accepts connections.
    pub fn start(port: u16, extra: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            port,
            args: extra.iter().map(|a| (*a).to_owned()).collect(),
            dir: std::env::temp_dir().join(unique_prefix("redis").replace(':', "-")),
        };
        server.restart();
        server
    }

    /// Starts the process again on the same port with the same arguments (after
    /// [`stop`](Self::stop)): empty, as after a crash, since it keeps no files.
    pub fn restart(&mut self) {
        let port = self.port;
        // Empty, as after a crash: nothing a replica wrote before is loaded again.
        let _ = std::fs::remove_dir_all(&self.dir);
        std::fs::create_dir_all(&self.dir).expect("a temporary directory for redis-server");
        let mut child = Command::new("redis-server")
            .current_dir(&self.dir)
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("redis-server must be installed (Debian package redis-server) for this test");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                let mut err = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    use std::io::Read;
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!(
                    "redis-server {:?} on port {port} exited ({status}): {err}",
                    self.args
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child = Some(child);
    }

    /// Kills the process (the test's own, never the shared server); a paused one too.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the process (`SIGSTOP`): it keeps its port and its connections, the kernel
    /// still accepts new ones, but nothing is answered until [`resume`](Self::resume). This is
    /// a hung Redis, which a test cannot get from `DEBUG SLEEP` on a server it shares.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [`pause`](Self::pause)d process run again (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let child = self
            .child
            .as_ref()
            .expect("the redis-server is running (not stopped)");
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .expect("the kill command runs");
        assert!(
            status.success(),
            "kill {signal} {} failed: {status}",
            child.id()
        );
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of three masters started by the test in a temporary directory; its
/// processes are killed and the directory removed on drop.
#[derive(Debug)]
pub struct RedisCluster {
    /// The three masters.
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
    /// `redis-cli` arguments that reach the nodes (`--tls --cacert <ca>` for a TLS cluster).
    cli_tls: Vec<String>,
}

impl RedisCluster {
    /// Starts three `redis-server --cluster-enabled yes` on free ports, joins them with
    /// `redis-cli --cluster create`, and waits for `cluster_state:ok` on every node.
    pub fn start() -> Self {
        Self::start_on(free_ports())
    }

    /// [`start`](Self::start) on these ports.
    pub fn start_on(ports: [u16; 3]) -> Self {
        Self::start_with(ports, |_| Vec::new(), Vec::new())
    }

    /// A cluster that speaks TLS only, to clients and between its nodes (`--tls-cluster yes`),
    /// with this server certificate and key (PEM) and `ca` as the CA `redis-cli` and the nodes
    /// trust. Clients need not present a certificate, but the nodes do to each other on the
    /// cluster bus: `client` is the certificate and key they present (one whose extended key
    /// usage allows client authentication). Its [`urls`](Self::urls) are `rediss://`.
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path, client: (&Path, &Path)) -> Self {
        let path = |p: &Path| p.to_str().expect("a UTF-8 path").to_owned();
        let (cert, key, ca) = (path(cert), path(key), path(ca));
        let (client_cert, client_key) = (path(client.0), path(client.1));
        let node_args = |port: u16| -> Vec<String> {
            [
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--tls-cert-file",
                &cert,
                "--tls-key-file",
                &key,
                "--tls-client-cert-file",
                &client_cert,
                "--tls-client-key-file",
                &client_key,
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                "no",
                "--tls-cluster",
                "yes",
                "--tls-replication",
                "yes",
            ]
            .map(str::to_owned)
            .to_vec()
        };
        Self::start_with(
            free_ports(),
            node_args,
            vec!["--tls".into(), "--cacert".into(), ca.clone()],
        )
    }

    fn start_with(
        ports: [u16; 3],
        node_args: impl Fn(u16) -> Vec<String>,
        cli_tls: Vec<String>,
    ) -> Self {
        let dir = std::env::temp_dir().join(unique_prefix("cluster").replace(':', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
            cli_tls,
        };
        for port in ports {
            let conf = cluster.dir.join(format!("nodes-{port}.conf"));
            let mut args: Vec<String> = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--dir",
                cluster.dir.to_str().unwrap(),
            ]
            .map(str::to_owned)
            .to_vec();
            // The cluster bus listens on port + 10,000 unless told otherwise, and a port above
            // 55,535 (common in the ephemeral range) would make that invalid.
            args.extend(["--cluster-port".to_owned(), free_port().to_string()]);
            args.extend(node_args(port));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            cluster.nodes.push(RedisServer::start(port, &args));
        }
        let info = cluster.cli(cluster.nodes[0].port, &["info", "cluster"]);
        assert!(
            info.contains("cluster_enabled:1"),
            "this redis-server has no cluster support (INFO cluster: {info}); \
             install a redis-server (7.x, Debian package redis-server) built with it"
        );
        let mut create = Command::new("redis-cli");
        create.args(&cluster.cli_tls).arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        let out = output_within(create, Duration::from_secs(30));
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in &cluster.nodes {
            loop {
                let info = cluster.cli(node.port, &["cluster", "info"]);
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the cluster did not reach cluster_state:ok: {info}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        cluster
    }

    /// Runs `redis-cli -p <port> <args>` and returns its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        let mut cli = Command::new("redis-cli");
        cli.args(&self.cli_tls)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args);
        String::from_utf8_lossy(&output_within(cli, Duration::from_secs(10)).stdout).into_owned()
    }

    /// The nodes' URLs (`rediss://` for a TLS cluster).
    pub fn urls(&self) -> Vec<String> {
        let scheme = if self.cli_tls.is_empty() {
            "redis"
        } else {
            "rediss"
        };
        self.nodes
            .iter()
            .map(|node| format!("{scheme}://127.0.0.1:{}", node.port))
            .collect()
    }

    /// The directory holding the nodes' files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs `command` to its end and returns what it printed; a command still running after
/// `limit` is killed and the test fails, rather than hanging the suite.
fn output_within(mut command: Command, limit: Duration) -> std::process::Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli must be installed (Debian package redis-tools) for this test");
    let id = child.id();
    let (done, wait) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match wait.recv_timeout(limit) {
        Ok(output) => output.expect("redis-cli ran"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &id.to_string()]).status();
            panic!("{command:?} did not finish within {limit:?}");
        }
    }
}
