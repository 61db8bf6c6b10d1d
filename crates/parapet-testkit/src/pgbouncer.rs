//! A PgBouncer of the test's own, in front of the test server, on a free port.
//!
//! Debian's `pgbouncer` (`apt-get install pgbouncer`), started in the foreground with a
//! configuration in a temporary directory, as the `postgres` user when the tests run as root
//! (PgBouncer refuses to run as root). Killed and removed on drop, also when the test panics.

use std::{
    net::TcpStream,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::cluster::{free_port, is_root};

/// A running PgBouncer.
#[derive(Debug)]
pub struct PgBouncer {
    child: Child,
    dir: PathBuf,
    port: u16,
}

impl PgBouncer {
    /// Starts PgBouncer in `pool_mode` (`transaction` or `session`) with `pool_size` server
    /// connections, for `database` on the server at `upstream_port` of 127.0.0.1; it trusts the
    /// `users` it lists (the server must trust them too).
    pub fn start(
        database: &str,
        upstream_port: u16,
        pool_mode: &str,
        pool_size: usize,
        users: &[&str],
    ) -> Self {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("parapet-pgbouncer-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let userlist: String = users.iter().map(|u| format!("\"{u}\" \"\"\n")).collect();
        std::fs::write(dir.join("users.txt"), userlist).expect("write users.txt");
        let ini = format!(
            "[databases]\n\
             {database} = host=127.0.0.1 port={upstream_port} dbname={database}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = trust\n\
             auth_file = {users}\n\
             pool_mode = {pool_mode}\n\
             default_pool_size = {pool_size}\n\
             min_pool_size = 0\n\
             reserve_pool_size = 0\n\
             max_client_conn = 500\n\
             server_reset_query =\n\
             logfile = {log}\n",
            users = dir.join("users.txt").display(),
            log = dir.join("pgbouncer.log").display(),
        );
        std::fs::write(dir.join("pgbouncer.ini"), ini).expect("write pgbouncer.ini");
        let mut command = Command::new("pgbouncer");
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "cannot chown {dir:?} to postgres");
            command.args(["-u", "postgres"]);
        }
        let child = command
            .arg(dir.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run pgbouncer ({e}); install it with: apt-get install pgbouncer")
            });
        let bouncer = Self { child, dir, port };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "pgbouncer did not listen on {port} within 10 s: {}",
                bouncer.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bouncer
    }

    /// A URL connecting through PgBouncer to its database as `user`.
    pub fn url(&self, user: &str, database: &str) -> String {
        format!("postgres://{user}@127.0.0.1:{}/{database}", self.port)
    }

    /// What PgBouncer logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
