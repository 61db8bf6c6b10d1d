//! A PostgreSQL cluster of the test's own, on a free port, that the test may stop and start.
//!
//! Built with the installed PostgreSQL's `initdb` and `pg_ctl` (run as the `postgres` user when
//! the tests run as root, since PostgreSQL refuses to run as root). Stopped and removed on drop.

use std::{
    path::PathBuf,
    process::{Command, Stdio},
};

/// A throw-away PostgreSQL cluster.
#[derive(Debug)]
pub struct TempCluster {
    dir: PathBuf,
    port: u16,
    bin: PathBuf,
    max_connections: u32,
    /// Extra `-c name=value` server options.
    extra: String,
}

fn bin_dir() -> PathBuf {
    let root = std::path::Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| {
            panic!("PostgreSQL server binaries not found under {root:?} ({e}); install postgresql")
        })
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .unwrap_or_else(|| panic!("no initdb under {root:?}; install postgresql"))
}

/// Whether the tests run as root (servers then run as the `postgres` user).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Runs a PostgreSQL tool, as the `postgres` user when we are root.
fn pg_command(bin: &std::path::Path, tool: &str) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

/// Hands `path` (recursively) to the `postgres` user when we are root.
fn chown_to_postgres(path: &std::path::Path) {
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(path)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "cannot chown {path:?} to postgres");
    }
}

fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {path:?}: {e}"));
}

pub use crate::ports::free_port;

impl TempCluster {
    /// Creates and starts a cluster with trust authentication on 127.0.0.1, a free port and
    /// `max_connections = 50`.
    pub fn start() -> Self {
        Self::start_with_max_connections(50)
    }

    /// Like [`start`](Self::start), with this `max_connections`.
    pub fn start_with_max_connections(max_connections: u32) -> Self {
        Self::start_configured(max_connections, |_| String::new())
    }

    /// A cluster that accepts TLS connections only: `ssl = on` with `server.crt` / `server.key`
    /// (PEM, copied into the data directory), and a `pg_hba.conf` of `hostssl ... trust` for
    /// 127.0.0.1 and ::1 and `hostnossl ... reject` for everything else.
    pub fn start_tls(server_cert: &std::path::Path, server_key: &std::path::Path) -> Self {
        Self::start_configured(50, |data| {
            std::fs::copy(server_cert, data.join("server.crt")).expect("copy server.crt");
            std::fs::copy(server_key, data.join("server.key")).expect("copy server.key");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostssl all all ::1/128 trust\n\
                 hostnossl all all 0.0.0.0/0 reject\n\
                 hostnossl all all ::/0 reject\n",
            )
            .expect("write pg_hba.conf");
            chown_to_postgres(data);
            set_mode(&data.join("server.key"), 0o600);
            " -c ssl=on -c ssl_cert_file=server.crt -c ssl_key_file=server.key".to_owned()
        })
    }

    /// initdb, then `configure(data_dir)` (which returns extra server options), then start.
    fn start_configured(
        max_connections: u32,
        configure: impl FnOnce(&std::path::Path) -> String,
    ) -> Self {
        let bin = bin_dir();
        let dir =
            std::env::temp_dir().join(format!("parapet-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "cannot chown {dir:?} to postgres");
        }
        let out = pg_command(&bin, "initdb")
            .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
            .arg(dir.join("data"))
            .stdout(Stdio::null())
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let extra = configure(&dir.join("data"));
        let cluster = Self {
            dir,
            port: free_port(),
            bin,
            max_connections,
            extra,
        };
        cluster.pg_start();
        cluster
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// What the server logged so far (its stderr: warnings and errors included).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn pg_start(&self) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections={}{}",
            self.port,
            self.dir.display(),
            self.max_connections,
            self.extra
        );
        let out = pg_command(&self.bin, "pg_ctl")
            .args(["-w", "-t", "30", "-o", &opts, "-l"])
            .arg(self.dir.join("log"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("start")
            .stdout(Stdio::null())
            .output()
            .expect("run pg_ctl start");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server at once (`-m immediate`: connections are cut, as in a crash).
    pub fn pg_stop(&self) {
        let _ = pg_command(&self.bin, "pg_ctl")
            .args(["-w", "-m", "immediate", "-D"])
            .arg(self.dir.join("data"))
            .arg("stop")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for TempCluster {
    fn drop(&mut self) {
        self.pg_stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
