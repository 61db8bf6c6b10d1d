//! Helpers shared by the integration tests: the real Redis, tenants, and counting origins.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::{Request, Response};
use http_body_util::BodyExt;
use parapet_cache::{CacheLayer, RedisConfig};
use parapet_tenant::{Tenant, TenantId, TenantRecord};
use tower::ServiceExt;

pub use parapet_testkit::{redis_url, unique_prefix};

/// What a test origin answers: status, headers, body.
pub type Answer = (u16, Vec<(&'static str, String)>, String);

/// A test origin: an infallible, cloneable service answering `Request<Body>`.
pub trait Origin:
    tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
    + Clone
    + Send
    + 'static
{
}

impl<S> Origin for S where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future: Send>
        + Clone
        + Send
        + 'static
{
}

/// An origin that answers call `n` (from 0) with `respond(n, request)`, and its call count.
pub fn origin(
    respond: impl Fn(usize, &Request<Body>) -> Answer + Send + Sync + 'static,
) -> (impl Origin, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let respond = Arc::new(respond);
    let service = tower::service_fn(move |request: Request<Body>| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let (status, headers, body) = respond(n, &request);
        let mut builder = Response::builder().status(status);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        let response = builder.body(Body::from(body)).unwrap();
        async move { Ok::<_, Infallible>(response) }
    });
    (service, calls)
}

/// An origin answering `"x"`: cacheable for 5 min on `GET`, `no-store` otherwise.
pub fn rest_origin() -> (impl Origin, Arc<AtomicUsize>) {
    origin(|_, request| {
        let cache_control = if request.method() == http::Method::GET {
            "max-age=300"
        } else {
            "no-store"
        };
        let headers = vec![("cache-control", cache_control.to_owned())];
        (200, headers, "x".to_owned())
    })
}

/// Polls `done` (every 2 ms) until it holds, failing the test with `what` after `limit`;
/// returns how long it took.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    started.elapsed()
}

/// A connection to the real Redis; fails the test (never skips) when it is not running.
pub async fn redis() -> redis::aio::MultiplexedConnection {
    let url = redis_url();
    let connect = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok::<_, redis::RedisError>(conn)
    };
    match tokio::time::timeout(Duration::from_secs(3), connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => panic!(
            "these tests need a real Redis at {url} (REDIS_URL) but it failed: {e}. Start one with: \
             redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no"
        ),
        Err(_) => panic!(
            "these tests need a real Redis at {url} (REDIS_URL) but it did not answer within 3 s. \
             Start one with: redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no"
        ),
    }
}

/// Redis settings for tests: a generous budget (the machine is shared and busy).
pub fn redis_config() -> RedisConfig {
    RedisConfig::new(redis_url()).timeout(Duration::from_millis(500))
}

/// A `Tenant` with this id.
pub fn tenant(id: &str) -> Tenant {
    let id = TenantId::parse(id).unwrap();
    Tenant::new(Arc::new(TenantRecord::new(id)), Arc::default())
}

/// A request for `tenant` (none when `None`).
pub fn request(
    method: &str,
    tenant_id: Option<&str>,
    uri: &str,
    headers: &[(&str, &str)],
) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    if let Some(id) = tenant_id {
        request.extensions_mut().insert(tenant(id));
    }
    request
}

/// A GET for `tenant`.
pub fn get(tenant_id: &str, uri: &str) -> Request<Body> {
    request("GET", Some(tenant_id), uri, &[])
}

/// The `Cache-Status` value (all lines joined).
pub fn cache_status(response: &Response<Body>) -> String {
    response
        .headers()
        .get_all("cache-status")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The response's header `name` as text, or "".
pub fn header(response: &Response<Body>, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The body as text.
pub async fn text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

/// Sends one request through `layer` in front of `service`.
pub async fn send<S>(layer: &CacheLayer, service: S, request: Request<Body>) -> Response<Body>
where
    S: tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    tower::Layer::layer(layer, service)
        .oneshot(request)
        .await
        .unwrap()
}

/// The `ttl` parameter of this cache's `Cache-Status` member.
pub fn ttl(response: &Response<Body>) -> i64 {
    let status = cache_status(response);
    let start = status.find("ttl=").expect("a ttl parameter") + 4;
    let rest = &status[start..];
    let end = rest.find(';').unwrap_or(rest.len());
    rest[..end].parse().unwrap()
}

/// A `redis-server` child process started by a test on its own port, killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` on `port` (no persistence) with `extra` arguments, and waits
    /// until it accepts connections.
    pub fn start(port: u16, extra: &[&str]) -> Self {
        let mut server = Self {
            child: None,
            port,
            args: extra.iter().map(|a| (*a).to_owned()).collect(),
        };
        server.restart();
        server
    }

    /// Starts the process again with the same arguments (after [`stop`](Self::stop)).
    pub fn restart(&mut self) {
        let port = self.port;
        let mut child = Command::new("redis-server")
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

    /// Kills the process (the test's own, never the shared server).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A free TCP port on the loopback interface.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Three distinct free ports (their listeners are held together while chosen).
pub fn free_ports() -> [u16; 3] {
    let listeners: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    [0, 1, 2].map(|i| listeners[i].local_addr().unwrap().port())
}

/// A Redis Cluster of three masters started by the test in a temporary directory; its
/// processes are killed and the directory removed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts three `redis-server --cluster-enabled yes` on free ports, joins them with
    /// `redis-cli --cluster create`, and waits for `cluster_state:ok` on every node.
    pub fn start() -> Self {
        Self::start_on(free_ports())
    }

    /// [`start`](Self::start) on these ports.
    pub fn start_on(ports: [u16; 3]) -> Self {
        let dir = std::env::temp_dir().join(unique_prefix("cluster").replace(':', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut cluster = Self {
            nodes: Vec::new(),
            dir,
        };
        for port in ports {
            let conf = cluster.dir.join(format!("nodes-{port}.conf"));
            let node = RedisServer::start(
                port,
                &[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    conf.to_str().unwrap(),
                    "--dir",
                    cluster.dir.to_str().unwrap(),
                ],
            );
            cluster.nodes.push(node);
        }
        let info = cluster.cli(cluster.nodes[0].port, &["info", "cluster"]);
        assert!(
            info.contains("cluster_enabled:1"),
            "this redis-server has no cluster support (INFO cluster: {info}); \
             install a redis-server (7.x, Debian package redis-server) built with it"
        );
        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        let out = create
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli must be installed (Debian package redis-tools) for this test");
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
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli must be installed (Debian package redis-tools) for this test");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The nodes' URLs.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
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

/// A test PKI made with the `openssl` CLI in a temporary directory (removed on drop): a CA,
/// a server certificate for `localhost` / `127.0.0.1` and a client certificate it signed, and
/// another CA that signed nothing here.
pub struct TestPki {
    dir: PathBuf,
}

impl TestPki {
    /// Generates the keys and certificates (P-256, valid one day).
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(unique_prefix("pki").replace(':', "-"));
        std::fs::create_dir_all(&dir).unwrap();
        let pki = Self { dir };
        for ca in ["ca", "other-ca"] {
            pki.openssl(&[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "1",
                "-subj",
                &format!("/CN=parapet test {ca}"),
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ]);
        }
        pki.sign(
            "server",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        );
        pki.sign("client", "extendedKeyUsage=clientAuth\n");
        pki
    }

    fn sign(&self, name: &str, extensions: &str) {
        std::fs::write(self.dir.join(format!("{name}.ext")), extensions).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &format!("{name}.ext"),
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&self.dir)
            .output()
            .expect("the openssl CLI must be installed (Debian package openssl) for this test");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A file of the PKI (`ca.pem`, `server.key`, `client.pem`, `other-ca.pem`, …).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `redis-server` arguments serving TLS only, on `port`, with this PKI's server
    /// certificate; clients must present a certificate when `require_client_cert`.
    pub fn server_args(&self, port: u16, require_client_cert: bool) -> Vec<String> {
        let path = |name: &str| self.path(name).to_str().unwrap().to_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path("server.pem"),
            "--tls-key-file".into(),
            path("server.key"),
            "--tls-ca-cert-file".into(),
            path("ca.pem"),
            "--tls-auth-clients".into(),
            if require_client_cert { "yes" } else { "no" }.into(),
        ]
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
