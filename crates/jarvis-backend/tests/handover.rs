//! The real binary takes its listening socket from a supervisor (systemd/listenfd
//! protocol: `LISTEN_FDS=1`, the socket at fd 3): a request made while no backend process
//! runs waits in the socket's queue and is answered by the next one, a connection accepted
//! just before SIGTERM is still answered, and an fd 3 that is not a listening TCP socket
//! is refused with a message.
//!
//! The socket is put at fd 3 as dev-local does it, without `unsafe`: the child gets it as
//! its stdin, and `sh` moves it to fd 3 before it execs the backend (same pid, so
//! `LISTEN_PID=$$` names the backend).

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const HAND_OVER: &str = r#"exec 3<&0 0</dev/null; LISTEN_FDS=1 LISTEN_PID=$$ exec "$@""#;

fn backend(stdin: Stdio) -> Command {
    let mut c = Command::new("sh");
    c.args(["-c", HAND_OVER, "sh", env!("CARGO_BIN_EXE_jarvis-backend")])
        .stdin(stdin)
        // Nothing of the developer's: no .env is read from a scratch directory.
        .current_dir(std::env::temp_dir())
        .env("MODELS_DIR", "/nonexistent/jarvis-models")
        .env("LLM_API_BASE", "http://127.0.0.1:9/v1")
        .env("FRONTEND_DIST", "/nonexistent/dist")
        // A port nobody should use: it must not be bound, the handed-over socket is.
        .env("PORT", "1");
    c
}

fn start(listener: &TcpListener) -> Child {
    backend(Stdio::from(std::os::fd::OwnedFd::from(listener.try_clone().unwrap())))
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn health(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(20)))?;
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

fn stop(child: Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    stop_waited(child);
}

fn stop_waited(mut child: Child) {
    let status = child.wait().unwrap();
    assert!(status.success(), "SIGTERM ends the backend gracefully: {status}");
}

#[test]
fn a_request_during_a_restart_waits_for_the_next_backend() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();

    let first = start(&listener);
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        if let Ok(a) = health(port) {
            break a;
        }
        assert!(Instant::now() < deadline, "the first backend did not answer");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(answer.starts_with("HTTP/1.0 200") && answer.contains(r#""status":"ok""#), "{answer}");
    stop(first);

    // No backend runs now: the connection is accepted by the kernel and waits.
    let waiting = std::thread::spawn(move || health(port));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!waiting.is_finished(), "the request waits instead of being refused");
    let second = start(&listener);
    let answer = waiting.join().unwrap().expect("the request made during the restart is answered");
    assert!(answer.starts_with("HTTP/1.0 200"), "{answer}");
    stop(second);
}

#[test]
fn a_connection_accepted_just_before_sigterm_is_still_answered() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let backend = start(&listener);
    let deadline = Instant::now() + Duration::from_secs(30);
    while health(port).is_err() {
        assert!(Instant::now() < deadline, "the backend did not answer");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Connected and accepted, the request not sent yet: what a restart can catch.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let status = Command::new("kill").args(["-TERM", &backend.id().to_string()]).status().unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(50));
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(b"GET /health HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("the accepted connection is answered, not reset");
    assert!(response.starts_with("HTTP/1.0 200"), "{response:?}");
    stop_waited(backend);
}

#[test]
fn an_fd_3_that_is_not_a_listening_socket_is_refused() {
    let output = backend(Stdio::from(std::fs::File::open("/dev/null").unwrap())).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("LISTEN_FDS is set, but fd 3 is not a listening TCP socket"), "{err}");
}
