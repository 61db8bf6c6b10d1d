//! Free TCP ports on 127.0.0.1 for the servers tests start.

/// A TCP port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Three distinct free ports (their listeners are held together while chosen).
pub fn free_ports() -> [u16; 3] {
    let listeners: Vec<_> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    [0, 1, 2].map(|i| listeners[i].local_addr().expect("a bound port").port())
}
