//! A TCP proxy between a store and the PostgreSQL test server that can lose a COMMIT or
//! its answer, once, on demand; and connection strings pointing elsewhere than the test
//! server's.
//!
//! The proxy does not parse the protocol: it recognises the simple-query message the
//! store sends to commit (`Q`, length 11, `COMMIT\0`), or a simple query that ends with
//! `; COMMIT` (the insert and the commit in one message), in the bytes going to the
//! server.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use postgres::Config;
use postgres::config::Host;

/// The simple-query message `COMMIT`, as the driver sends it.
const COMMIT: &[u8] = b"Q\0\0\0\x0bCOMMIT\0";

/// The end of a simple query whose last statement is `COMMIT`.
const ENDS_WITH_COMMIT: &[u8] = b"; COMMIT\0";

/// What the proxy does to the next COMMIT once armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forwards the COMMIT, throws the server's answer away and closes both connections:
    /// the server commits, the client hears nothing.
    LoseAnswer,
    /// Throws the COMMIT away and closes both connections: the server never sees it and
    /// rolls back when its client goes away.
    LoseCommit,
    /// Closes the client's connection at once, forwards the COMMIT a second later (as if
    /// it had been stuck in the network) and throws the answer away: the client hears
    /// nothing, and the server commits after the client has given up.
    LateCommit,
}

/// How long [`Fault::LateCommit`] holds the COMMIT back.
const LATE: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Shared {
    upstream: (String, u16),
    armed: Mutex<Option<Fault>>,
    refuse: AtomicBool,
    stopped: AtomicBool,
    fired: AtomicUsize,
}

/// A proxy listening on a port of 127.0.0.1, forwarding to the test server; stopped on
/// drop (connections already made live until either side closes them).
#[derive(Debug)]
pub struct Proxy {
    port: u16,
    url: String,
    shared: Arc<Shared>,
}

impl Proxy {
    /// Starts a proxy to the (TCP) server of `url`.
    ///
    /// # Errors
    /// When `url` cannot be parsed or names no TCP host, or no port can be bound.
    pub fn start(url: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let config: Config = url.parse()?;
        let host = config
            .get_hosts()
            .iter()
            .find_map(|h| {
                if let Host::Tcp(host) = h {
                    Some(host.clone())
                } else {
                    None
                }
            })
            .ok_or("the test server's connection string names no TCP host")?;
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let local = listener.local_addr()?.port();
        let shared = Arc::new(Shared {
            upstream: (host, port),
            armed: Mutex::new(None),
            refuse: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
            fired: AtomicUsize::new(0),
        });
        let accepting = Arc::clone(&shared);
        thread::spawn(move || accept(&listener, &accepting));
        Ok(Proxy {
            port: local,
            url: connection_string(&config, Some(("127.0.0.1", local)), None)?,
            shared,
        })
    }

    /// A connection string that goes through the proxy (the test server's, with the
    /// proxy's host and port).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Applies `fault` to the next COMMIT through any connection of the proxy.
    pub fn arm(&self, fault: Fault) {
        *self
            .shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(fault);
    }

    /// Whether a fault is armed and has not struck yet.
    pub fn armed(&self) -> bool {
        self.shared
            .armed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// From now on, closes every new connection at once (`true`) or forwards it again.
    pub fn refuse_new_connections(&self, refuse: bool) {
        self.shared.refuse.store(refuse, Ordering::SeqCst);
    }

    /// How many faults have struck.
    pub fn fired(&self) -> usize {
        self.shared.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        // Wakes the accepting thread, which then sees `stopped`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn accept(listener: &TcpListener, shared: &Arc<Shared>) {
    for client in listener.incoming() {
        if shared.stopped.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.refuse.load(Ordering::SeqCst) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let (host, port) = &shared.upstream;
        let Ok(server) = TcpStream::connect((host.as_str(), *port)) else {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = (client.set_nodelay(true), server.set_nodelay(true));
        let (Ok(client_out), Ok(server_out)) = (client.try_clone(), server.try_clone()) else {
            continue;
        };
        let lost = Arc::new(AtomicBool::new(false));
        let to_server = {
            let (shared, lost) = (Arc::clone(shared), Arc::clone(&lost));
            let (client, server) = (client_out, server_out);
            move || client_to_server(client, server, &shared, &lost)
        };
        thread::spawn(to_server);
        thread::spawn(move || server_to_client(server, client, &lost));
    }
}

/// Closes both connections of a proxied pair.
fn close(a: &TcpStream, b: &TcpStream) {
    let _ = a.shutdown(Shutdown::Both);
    let _ = b.shutdown(Shutdown::Both);
}

fn client_to_server(
    mut client: TcpStream,
    mut server: TcpStream,
    shared: &Shared,
    lost: &AtomicBool,
) {
    let mut buf = vec![0; 64 * 1024];
    // The last bytes forwarded, so that a COMMIT split between two reads is recognised.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let mut window = std::mem::take(&mut tail);
        window.extend_from_slice(chunk);
        if window.windows(COMMIT.len()).any(|w| w == COMMIT)
            || window
                .windows(ENDS_WITH_COMMIT.len())
                .any(|w| w == ENDS_WITH_COMMIT)
        {
            let fault = shared
                .armed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            if let Some(fault) = fault {
                shared.fired.fetch_add(1, Ordering::SeqCst);
                match fault {
                    Fault::LoseAnswer => {
                        // Set before the COMMIT leaves, so its answer is never forwarded.
                        lost.store(true, Ordering::SeqCst);
                        let _ = server.write_all(chunk);
                        let _ = client.shutdown(Shutdown::Both);
                    }
                    Fault::LoseCommit => close(&client, &server),
                    Fault::LateCommit => {
                        lost.store(true, Ordering::SeqCst);
                        let _ = client.shutdown(Shutdown::Both);
                        thread::sleep(LATE);
                        let _ = server.write_all(chunk);
                    }
                }
                return;
            }
        }
        if server.write_all(chunk).is_err() {
            break;
        }
        let keep = window.len().min(COMMIT.len() - 1);
        tail = window.split_off(window.len() - keep);
    }
    close(&client, &server);
}

fn server_to_client(mut server: TcpStream, mut client: TcpStream, lost: &AtomicBool) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if lost.load(Ordering::SeqCst) || client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    close(&client, &server);
}

/// `url` with `application_name` set, so that a test can find the store's sessions in
/// `pg_stat_activity`.
///
/// # Errors
/// When `url` cannot be parsed or names no TCP host.
pub fn with_application_name(url: &str, name: &str) -> Result<String, Box<dyn std::error::Error>> {
    connection_string(&url.parse()?, None, Some(name))
}

/// `config` as a key-value connection string, with another host and port, or another
/// application name, if given.
fn connection_string(
    config: &Config,
    address: Option<(&str, u16)>,
    application_name: Option<&str>,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut parts = Vec::new();
    let mut add = |key: &str, value: &str| {
        let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
        parts.push(format!("{key}='{quoted}'"));
    };
    if let Some((host, port)) = address {
        add("host", host);
        add("port", &port.to_string());
    } else {
        for host in config.get_hosts() {
            let Host::Tcp(host) = host else {
                return Err("the test server's connection string names no TCP host".into());
            };
            add("host", host);
        }
        for port in config.get_ports() {
            add("port", &port.to_string());
        }
    }
    if let Some(user) = config.get_user() {
        add("user", user);
    }
    if let Some(password) = config.get_password() {
        add("password", std::str::from_utf8(password)?);
    }
    if let Some(dbname) = config.get_dbname() {
        add("dbname", dbname);
    }
    if let Some(name) = application_name.or(config.get_application_name()) {
        add("application_name", name);
    }
    Ok(parts.join(" "))
}
