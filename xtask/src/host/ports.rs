//! Host ports the stack publishes: whether they are free, and if not, who holds them. Starting a
//! container on a taken port fails late and vaguely ("port already in use"); checking first lets us
//! name the port and, on Linux, the process (found through /proc, so no libc and no `ss`/`lsof`).

use std::{fs, net::TcpListener, path::Path};

/// A process found listening on a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// The command line, space-joined from /proc/<pid>/cmdline (falls back to /proc/<pid>/comm), trimmed to at most 120 chars.
    pub command: String,
}

/// The longest command we show; long Java or Node command lines would otherwise swamp the message.
const MAX_COMMAND_CHARS: usize = 120;

/// The /proc/net/tcp state of a listening socket.
const TCP_LISTEN: &str = "0A";

/// Whether `addr:port` can be bound right now (tries to bind a std::net::TcpListener and drops it at once).
/// `addr` is e.g. "127.0.0.1" or "0.0.0.0".
pub fn is_free(addr: &str, port: u16) -> bool {
    // A (host, port) pair rather than "addr:port", so that IPv6 addresses such as "::1" work too.
    TcpListener::bind((addr, port)).is_ok()
}

/// A port free on 127.0.0.1 and 0.0.0.0, below the kernel's ephemeral range (32768 and up),
/// so that no client connection (pip, npm, cargo, a request loop) can take it between this
/// check and the moment it is bound. Each call in a process gives a different port, and
/// processes start at different places in the range. For the benchmarks' and the tests'
/// scratch projects.
pub fn free_port() -> Option<u16> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    const FIRST: usize = 20000;
    const COUNT: usize = 12000;
    let start = (std::process::id() as usize * 7919) % COUNT;
    (0..COUNT)
        .map(|_| (FIRST + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % COUNT) as u16)
        .find(|&port| is_free("127.0.0.1", port) && is_free("0.0.0.0", port))
}

/// The process listening on TCP `port` (any local address, IPv4 or IPv6), found through
/// /proc/net/tcp and /proc/net/tcp6 (state 0A = LISTEN, local port in hex) and then the
/// socket inode in /proc/<pid>/fd/* symlinks ("socket:[INODE]"). None when it cannot be
/// found (another user's process without permission, a container engine's proxy in another
/// namespace, not Linux...).
pub fn holder(port: u16) -> Option<Holder> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        // tcp6 is missing when IPv6 is disabled; the other table may still have the answer.
        if let Ok(text) = fs::read_to_string(table) {
            inodes.extend(listening_inodes(&text, port));
        }
    }
    if inodes.is_empty() {
        return None;
    }
    let pid = pids().into_iter().find(|&pid| owns_any_socket(pid, &inodes))?;
    Some(Holder { pid, command: command_of(pid) })
}

/// One line for a user: "port 8000 is in use by pid 1234 (python3 -m http.server 8000)"
/// or, when the holder is unknown, "port 8000 is in use by another process (run `ss -ltnp 'sport = :8000'` to see which)".
pub fn describe_conflict(port: u16, holder: Option<&Holder>) -> String {
    match holder {
        Some(h) => format!("port {port} is in use by pid {} ({})", h.pid, h.command),
        None => format!(
            "port {port} is in use by another process (run `ss -ltnp 'sport = :{port}'` to see which)"
        ),
    }
}

/// The socket inodes listening on `port` in one /proc/net/tcp or /proc/net/tcp6 table. Pure, so the
/// format handling is testable without a live socket. Lines look like
/// `0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000 1000 0 123456 ...`
/// (sl, local address:port, remote address:port, state, queues, timer, retransmits, uid, timeout,
/// inode); the header line and anything malformed fail to parse and are skipped.
fn listening_inodes(table: &str, port: u16) -> Vec<u64> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            let (_, hex_port) = local.rsplit_once(':')?;
            let local_port = u16::from_str_radix(hex_port, 16).ok()?;
            let inode: u64 = inode.parse().ok()?;
            // Inode 0 means the socket has no file (already orphaned); no process can be holding it.
            (local_port == port && state.eq_ignore_ascii_case(TCP_LISTEN) && inode != 0).then_some(inode)
        })
        .collect()
}

/// Every process id under /proc, in ascending order so that a parent that forked workers sharing
/// the socket is reported rather than one of its workers.
fn pids() -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> =
        entries.flatten().filter_map(|entry| entry.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    pids
}

/// Whether one of `pid`'s open files is one of the sockets `inodes`. Another user's /proc/<pid>/fd
/// is unreadable without privileges, and processes exit mid-scan; both just mean "not found here".
fn owns_any_socket(pid: u32, inodes: &[u64]) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .ok()
            .and_then(|target| socket_inode(&target))
            .is_some_and(|inode| inodes.contains(&inode))
    })
}

/// The inode of an fd symlink target of the form "socket:[INODE]"; None for files, pipes and the like.
fn socket_inode(target: &Path) -> Option<u64> {
    target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// A readable command for `pid`: its arguments joined by spaces, or its short name when the
/// command line is empty (kernel threads, zombies) or unreadable.
fn command_of(pid: u32) -> String {
    let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let joined = String::from_utf8_lossy(&cmdline)
        .split('\0')
        .filter(|arg| !arg.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let command = if joined.trim().is_empty() {
        fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim().to_string()
    } else {
        joined.trim().to_string()
    };
    let command = if command.is_empty() { "unknown command".to_string() } else { command };
    truncate_chars(&command, MAX_COMMAND_CHARS)
}

/// `text` cut to at most `max` characters (not bytes, so multi-byte arguments cannot split), with
/// a trailing "…" when something was cut.
fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use std::{
        io::ErrorKind,
        net::TcpStream,
        process::{Child, Command, Stdio},
        thread,
        time::{Duration, Instant},
    };

    use super::*;

    const TCP_SAMPLE: &str = "  \
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0
   1: 00000000:1435 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 222222 1 0000000000000000 100 0 0 10 0
   2: 0100007F:1F40 0100007F:D2B6 01 00000000:00000000 00:00000000 00000000  1000        0 333333 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:1F40 0100007F:C350 06 00000000:00000000 03:00000F9B 00000000     0        0 0 3 0000000000000000
";

    const TCP6_SAMPLE: &str = "  \
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 444444 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1435 00000000000000000000000001000000:A1B2 01 00000000:00000000 00:00000000 00000000  1000        0 555555 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn free_ports_are_below_the_ephemeral_range_free_and_distinct() {
        let (a, b) = (super::free_port().unwrap(), super::free_port().unwrap());
        assert_ne!(a, b);
        for port in [a, b] {
            assert!((20000..32000).contains(&port), "{port}");
            assert!(is_free("127.0.0.1", port));
        }
    }

    #[test]
    fn parses_ipv4_listeners_and_ignores_other_states() {
        // 0x1F40 = 8000: the LISTEN line counts; the ESTABLISHED and TIME_WAIT lines on 8000 do not.
        assert_eq!(listening_inodes(TCP_SAMPLE, 8000), vec![123456]);
        // 0x1435 = 5173.
        assert_eq!(listening_inodes(TCP_SAMPLE, 5173), vec![222222]);
        assert_eq!(listening_inodes(TCP_SAMPLE, 9999), Vec::<u64>::new());
    }

    #[test]
    fn parses_ipv6_listeners_and_ignores_other_states() {
        assert_eq!(listening_inodes(TCP6_SAMPLE, 8000), vec![444444]);
        // Only an ESTABLISHED socket on 5173 here.
        assert_eq!(listening_inodes(TCP6_SAMPLE, 5173), Vec::<u64>::new());
    }

    #[test]
    fn ignores_garbage() {
        assert_eq!(listening_inodes("", 8000), Vec::<u64>::new());
        assert_eq!(listening_inodes("not a table\n0: nonsense\n", 8000), Vec::<u64>::new());
    }

    #[test]
    fn reads_socket_inodes_from_fd_links() {
        assert_eq!(socket_inode(Path::new("socket:[123456]")), Some(123456));
        assert_eq!(socket_inode(Path::new("pipe:[123456]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
    }

    #[test]
    fn truncates_long_commands_by_characters() {
        assert_eq!(truncate_chars("short", 120), "short");
        let long = "é".repeat(200);
        let cut = truncate_chars(&long, 120);
        assert_eq!(cut.chars().count(), 120);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn describes_known_and_unknown_holders() {
        let holder = Holder { pid: 1234, command: "python3 -m http.server 8000".into() };
        assert_eq!(
            describe_conflict(8000, Some(&holder)),
            "port 8000 is in use by pid 1234 (python3 -m http.server 8000)"
        );
        assert_eq!(
            describe_conflict(8000, None),
            "port 8000 is in use by another process (run `ss -ltnp 'sport = :8000'` to see which)"
        );
    }

    #[test]
    fn finds_this_process_as_holder() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        let found = holder(port).expect("our own listener is visible in /proc");
        assert_eq!(found.pid, std::process::id());
        assert!(!found.command.is_empty());
        assert!(!is_free("127.0.0.1", port));
        drop(listener);
        assert!(is_free("127.0.0.1", port));
    }

    #[test]
    fn nobody_holds_an_unused_port() {
        let port = free_port();
        assert_eq!(holder(port), None);
    }

    /// Kills and reaps the child however the test ends, so a failed assertion leaves no server behind.
    struct ChildGuard(Child);

    impl Drop for ChildGuard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    #[test]
    fn finds_a_child_server_as_holder() {
        let port = free_port();
        let spawned = Command::new("python3")
            .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let child = match spawned {
            Ok(child) => child,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                eprintln!("skipping: python3 is not on PATH");
                return;
            }
            Err(e) => panic!("spawn python3: {e}"),
        };
        let mut guard = ChildGuard(child);
        let pid = guard.0.id();

        let addr = ([127, 0, 0, 1], port).into();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if let Ok(Some(status)) = guard.0.try_wait() {
                panic!("python3 -m http.server exited early: {status}");
            }
            assert!(Instant::now() < deadline, "python3 -m http.server did not listen on {port} within 10 s");
            thread::sleep(Duration::from_millis(50));
        }

        let found = holder(port).expect("the child server is visible in /proc");
        assert_eq!(found.pid, pid);
        assert!(found.command.contains("http.server"), "command was {:?}", found.command);
        assert!(!is_free("127.0.0.1", port));
        assert_eq!(
            describe_conflict(port, Some(&found)),
            format!("port {port} is in use by pid {pid} ({})", found.command)
        );
    }

    /// A port that was free a moment ago: the kernel picks it, we release it.
    fn free_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        listener.local_addr().expect("local address").port()
    }
}
