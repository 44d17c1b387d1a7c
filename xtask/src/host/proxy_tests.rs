//! The metering proxy against servers on loopback: a tunnel counts exactly the bytes each
//! way, many tunnels at once add up, a plain GET is forwarded in origin form, a real HTTP
//! client goes through it, and what is not a CONNECT, GET or HEAD is refused.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::Duration,
};

use super::*;

const GRACE: Duration = Duration::from_secs(5);

/// A server that reads `expect` bytes, answers `answer` bytes, then closes; sends what it
/// read on the channel.
fn server(expect: usize, answer: usize, connections: usize) -> (u16, mpsc::Receiver<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming().take(connections) {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut stream = stream.unwrap();
                let mut got = vec![0; expect];
                stream.read_exact(&mut got).unwrap();
                stream.write_all(&vec![7u8; answer]).unwrap();
                tx.send(got).unwrap();
            });
        }
    });
    (port, rx)
}

/// Connects through the proxy with CONNECT and returns the tunnel, after the 200.
fn open_tunnel(proxy: &Proxy, target: &str) -> (String, TcpStream) {
    let mut stream = TcpStream::connect(proxy.addr).unwrap();
    write!(stream, "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
        line.clear();
    }
    (status, stream)
}

#[test]
fn a_tunnel_counts_the_bytes_each_way_exactly() {
    let (port, seen) = server(1000, 3_000_000, 1);
    let proxy = Proxy::start().unwrap();
    let (status, mut tunnel) = open_tunnel(&proxy, &format!("127.0.0.1:{port}"));
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    tunnel.write_all(&[1u8; 1000]).unwrap();
    let mut got = Vec::new();
    tunnel.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), 3_000_000);
    assert_eq!(seen.recv().unwrap(), vec![1u8; 1000], "the server got the client's bytes as sent");
    drop(tunnel);
    assert_eq!(proxy.finish(GRACE), Totals { received: 3_000_000, sent: 1000 });
}

#[test]
fn many_tunnels_at_once_add_up() {
    let (port, _seen) = server(10, 250_000, 8);
    let proxy = Proxy::start().unwrap();
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (status, mut tunnel) = open_tunnel(&proxy, &format!("localhost:{port}"));
            assert!(status.starts_with("HTTP/1.1 200"), "{status}");
            thread::spawn(move || {
                tunnel.write_all(&[0u8; 10]).unwrap();
                let mut got = Vec::new();
                tunnel.read_to_end(&mut got).unwrap();
                got.len()
            })
        })
        .collect();
    let total: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(total, 8 * 250_000);
    assert_eq!(proxy.finish(GRACE), Totals { received: 8 * 250_000, sent: 80 });
}

#[test]
fn a_plain_get_is_forwarded_in_origin_form_without_the_proxy_headers() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            head += &line;
        }
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello").unwrap();
        tx.send(head).unwrap();
    });
    let proxy = Proxy::start().unwrap();
    let mut client = TcpStream::connect(proxy.addr).unwrap();
    write!(
        client,
        "GET http://127.0.0.1:{port}/simple/x/?a=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eDp5\r\nAccept: */*\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    client.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK") && response.ends_with("hello"), "{response}");
    let head = rx.recv().unwrap();
    assert_eq!(
        head,
        format!(
            "GET /simple/x/?a=1 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: */*\r\nConnection: close\r\n"
        )
    );
    drop(client);
    assert_eq!(proxy.finish(GRACE).received, response.len() as u64);
}

#[test]
fn a_real_http_client_goes_through_it() {
    let body = vec![b'x'; 200_000];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = body.clone();
    thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", answer.len())
            .unwrap();
        stream.write_all(&answer).unwrap();
    });
    let proxy = Proxy::start().unwrap();
    let agent: ureq::Agent =
        ureq::Agent::config_builder().proxy(Some(ureq::Proxy::new(&proxy.url()).unwrap())).build().into();
    let got =
        agent.get(&format!("http://127.0.0.1:{port}/file")).call().unwrap().body_mut().read_to_vec().unwrap();
    assert_eq!(got, body);
    drop(agent);
    let totals = proxy.finish(GRACE);
    assert!(totals.received > 200_000 && totals.received < 200_200, "{totals:?}");
}

#[test]
fn what_it_does_not_forward_is_refused() {
    let proxy = Proxy::start().unwrap();
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    for (request, status) in [
        ("POST http://127.0.0.1:1/ HTTP/1.1\r\n\r\n".to_string(), "405"),
        ("DELETE / HTTP/1.1\r\n\r\n".to_string(), "405"),
        ("GET /relative HTTP/1.1\r\n\r\n".to_string(), "400"),
        ("GET https://example.invalid/ HTTP/1.1\r\n\r\n".to_string(), "400"),
        ("CONNECT example.invalid HTTP/1.1\r\n\r\n".to_string(), "400"),
        (format!("CONNECT 127.0.0.1:{closed} HTTP/1.1\r\n\r\n"), "502"),
    ] {
        let mut client = TcpStream::connect(proxy.addr).unwrap();
        client.write_all(request.as_bytes()).unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).unwrap();
        assert!(response.starts_with(&format!("HTTP/1.1 {status}")), "{request:?} got {response:?}");
    }
    assert_eq!(proxy.finish(GRACE), Totals::default(), "nothing went anywhere");
}

#[test]
fn authorities() {
    assert_eq!(host_port("pypi.org:443", None), Some(("pypi.org".into(), 443)));
    assert_eq!(host_port("[::1]:8080", None), Some(("::1".into(), 8080)));
    assert_eq!(host_port("[::1]", Some(80)), Some(("::1".into(), 80)));
    assert_eq!(host_port("example.org", Some(80)), Some(("example.org".into(), 80)));
    assert_eq!(host_port("example.org", None), None);
    assert_eq!(host_port(":443", None), None);
    assert_eq!(host_port("x:0", None), None);
    assert_eq!(host_port("x:port", None), None);
}

#[test]
fn a_proxy_in_pip_or_npm_configuration_is_seen() {
    assert!(sets_proxy("[global]\nproxy = http://corp:3128\n"));
    assert!(sets_proxy("https-proxy=http://corp:3128\n"));
    assert!(!sets_proxy("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nno-proxy=localhost\n"));
    assert!(!sets_proxy("proxy=\n"));
}
