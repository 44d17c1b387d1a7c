//! The metering proxy that pip and npm on the host go through (setup, dev-local), so the
//! meter can say what they downloaded: measured, not guessed. It listens on 127.0.0.1 on
//! a port of its own for the duration of one tool run and is handed to the tool by
//! environment (`env`). A `CONNECT host:port` opens a tunnel to exactly that host and
//! port, and the bytes are counted as they pass, never decrypted; a plain-HTTP `GET` or
//! `HEAD` (an `http://` index or find-links) is forwarded with `Connection: close`;
//! anything else is refused. Plain threads and std::net: two threads per connection.

use std::{
    fs,
    io::{self, Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
    },
    thread,
    time::{Duration, Instant},
};

/// A request head longer than this is refused (pip's and npm's are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Default)]
struct Counts {
    /// Bytes from the servers to the tools: what was downloaded.
    received: AtomicU64,
    /// Bytes from the tools to the servers (requests, TLS handshakes).
    sent: AtomicU64,
    /// Connections being served.
    active: AtomicUsize,
}

/// What passed through the proxy.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Totals {
    pub received: u64,
    pub sent: u64,
}

/// A running proxy; stopped by `finish` or when dropped.
pub struct Proxy {
    addr: SocketAddr,
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    accept: Option<thread::JoinHandle<()>>,
}

impl Proxy {
    /// Listens on 127.0.0.1 (a free port) and serves each connection on its own threads.
    pub fn start() -> io::Result<Proxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let counts = c.clone();
                counts.active.fetch_add(1, SeqCst);
                thread::spawn(move || {
                    let _ = serve(stream, &counts);
                    counts.active.fetch_sub(1, SeqCst);
                });
            }
        });
        Ok(Proxy { addr, counts, stop, accept: Some(accept) })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The variables that send pip (requests reads the `*_PROXY` ones) and npm (its
    /// `npm_config_*` settings) through this proxy.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        [
            "HTTPS_PROXY",
            "https_proxy",
            "HTTP_PROXY",
            "http_proxy",
            "npm_config_https_proxy",
            "npm_config_proxy",
        ]
        .into_iter()
        .map(|key| (key, self.url()))
        .collect()
    }

    /// What has passed so far.
    pub fn totals(&self) -> Totals {
        Totals { received: self.counts.received.load(SeqCst), sent: self.counts.sent.load(SeqCst) }
    }

    /// Stops listening, lets the connections still open end (their client has exited, so
    /// they end at once; at most `grace`), and returns what passed.
    pub fn finish(mut self, grace: Duration) -> Totals {
        self.stop_accepting();
        let deadline = Instant::now() + grace;
        while self.counts.active.load(SeqCst) > 0 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        self.totals()
    }

    fn stop_accepting(&mut self) {
        if let Some(accept) = self.accept.take() {
            self.stop.store(true, SeqCst);
            // accept() blocks: one connection wakes it to see the flag.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
            let _ = accept.join();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop_accepting();
    }
}

/// One client connection: its request head, then a tunnel or one forwarded request.
fn serve(mut client: TcpStream, counts: &Counts) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (head, rest) = match read_head(&mut client) {
        Ok(read) => read,
        Err(_) => return refuse(&mut client, "400 Bad Request"),
    };
    client.set_read_timeout(None)?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next().unwrap_or("").split(' ');
    let (method, target) = (request_line.next().unwrap_or(""), request_line.next().unwrap_or(""));
    match method {
        "CONNECT" => {
            let Some((host, port)) = host_port(target, None) else {
                return refuse(&mut client, "400 Bad Request");
            };
            let Ok(upstream) = connect(&host, port) else { return refuse(&mut client, "502 Bad Gateway") };
            client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?;
            tunnel(client, upstream, &rest, counts)
        }
        "GET" | "HEAD" => {
            let Some(url) = target.strip_prefix("http://") else {
                return refuse(&mut client, "400 Bad Request");
            };
            let (authority, path) = match url.find('/') {
                Some(i) => (&url[..i], &url[i..]),
                None => (url, "/"),
            };
            let Some((host, port)) = host_port(authority, Some(80)) else {
                return refuse(&mut client, "400 Bad Request");
            };
            let Ok(mut upstream) = connect(&host, port) else {
                return refuse(&mut client, "502 Bad Gateway");
            };
            // Origin form, our own Connection header, and nothing meant for the proxy.
            let mut request = format!("{method} {path} HTTP/1.1\r\n");
            for line in lines.filter(|l| !l.is_empty()) {
                let name = line.split(':').next().unwrap_or("").trim().to_ascii_lowercase();
                if !matches!(
                    name.as_str(),
                    "connection" | "keep-alive" | "proxy-connection" | "proxy-authorization"
                ) {
                    request += &format!("{line}\r\n");
                }
            }
            request += "Connection: close\r\n\r\n";
            upstream.write_all(request.as_bytes())?;
            counts.sent.fetch_add(request.len() as u64, SeqCst);
            tunnel(client, upstream, &rest, counts)
        }
        _ => refuse(&mut client, "405 Method Not Allowed"),
    }
}

fn refuse(client: &mut TcpStream, status: &str) -> io::Result<()> {
    client
        .write_all(format!("HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").as_bytes())
}

/// The request head (up to the blank line) and whatever the client sent after it.
fn read_head(client: &mut TcpStream) -> io::Result<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        let n = client.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buf.split_off(end + 4);
            let head = String::from_utf8(buf).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            return Ok((head, rest));
        }
        if buf.len() > MAX_HEAD {
            return Err(io::ErrorKind::InvalidData.into());
        }
    }
}

/// `host:port` (or `[v6]:port`) as asked; the port may be left out only where there is a
/// default.
fn host_port(authority: &str, default: Option<u16>) -> Option<(String, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => (host, port.parse().ok()?),
        _ => (authority, default?),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

fn connect(host: &str, port: u16) -> io::Result<TcpStream> {
    let mut last = io::Error::from(io::ErrorKind::NotFound);
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Copies both ways until either side is done, counting: the client's early bytes
/// (`rest`) first.
fn tunnel(client: TcpStream, mut upstream: TcpStream, rest: &[u8], counts: &Counts) -> io::Result<()> {
    if !rest.is_empty() {
        upstream.write_all(rest)?;
        counts.sent.fetch_add(rest.len() as u64, SeqCst);
    }
    let (client_r, upstream_w) = (client.try_clone()?, upstream.try_clone()?);
    thread::scope(|scope| {
        // Up: the client is done (it exited or closed): close the tunnel both ways.
        scope.spawn(|| {
            copy(client_r, &upstream_w, &counts.sent);
            let _ = upstream_w.shutdown(Shutdown::Both);
            let _ = client.shutdown(Shutdown::Read);
        });
        // Down: the server is done: everything it sent reaches the client, then EOF.
        copy(upstream, &client, &counts.received);
        let _ = client.shutdown(Shutdown::Write);
    });
    Ok(())
}

/// Copies until EOF or an error on either side, counting each chunk before it is passed
/// on (so a client that has read a byte finds it counted).
fn copy(mut from: TcpStream, mut to: &TcpStream, counter: &AtomicU64) {
    let mut buf = vec![0; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                counter.fetch_add(n as u64, SeqCst);
                if to.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// The user's own proxy for pip or npm, if one is set: then it is used as it is and the
/// bytes are not measured (this proxy does not chain to another). Where it is set: a
/// variable, or a `proxy` key in pip's or npm's configuration files.
pub fn users_proxy(frontend: &Path) -> Option<String> {
    let vars =
        ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "PIP_PROXY"];
    let npm_vars =
        ["npm_config_https_proxy", "npm_config_proxy", "NPM_CONFIG_HTTPS_PROXY", "NPM_CONFIG_PROXY"];
    if let Some(var) =
        vars.iter().chain(&npm_vars).find(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()))
    {
        return Some(format!("${var}"));
    }
    config_files(frontend)
        .into_iter()
        .find(|f| sets_proxy(&fs::read_to_string(f).unwrap_or_default()))
        .map(|f| f.display().to_string())
}

/// pip's and npm's configuration files that may name a proxy.
fn config_files(frontend: &Path) -> Vec<PathBuf> {
    let var = |key: &str| std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    let home = var("HOME").unwrap_or_default();
    let config = var("XDG_CONFIG_HOME").unwrap_or_else(|| home.join(".config"));
    let mut files: Vec<PathBuf> = ["PIP_CONFIG_FILE", "NPM_CONFIG_USERCONFIG", "npm_config_userconfig"]
        .into_iter()
        .filter_map(var)
        .collect();
    files.extend(
        ["/etc/pip.conf", "/etc/xdg/pip/pip.conf", "/etc/npmrc", "/usr/etc/npmrc", "/usr/local/etc/npmrc"]
            .map(PathBuf::from),
    );
    files.extend([
        config.join("pip/pip.conf"),
        home.join(".pip/pip.conf"),
        home.join(".npmrc"),
        frontend.join(".npmrc"),
    ]);
    files
}

/// Whether a pip.conf or .npmrc text sets `proxy` or `https-proxy`.
fn sets_proxy(text: &str) -> bool {
    text.lines().any(|line| {
        line.split_once('=').is_some_and(|(key, value)| {
            matches!(key.trim(), "proxy" | "https-proxy" | "https_proxy") && !value.trim().is_empty()
        })
    })
}

#[cfg(test)]
#[path = "proxy_tests.rs"]
mod tests;
