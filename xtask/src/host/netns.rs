//! What a process's network namespace has received, read from the host through
//! `/proc/<pid>/net`: for a container this run started, the bytes it brought in until it
//! answered (the crates a dev backend fetches when its cargo volumes predate the image's
//! dependency layer). The rule is `docker/meter.sh`'s, which does the same inside each
//! build step: unicast IP bytes, IPv4 and IPv6, less the namespace's own loopback; not the multicast the bridge sends every
//! namespace, which never crossed the host's interface.

use std::path::Path;

/// Received unicast IP bytes of the network namespace `pid` lives in; `None` when its
/// counters cannot be read (the process is gone, or /proc is not ours to read).
pub fn received(pid: u32) -> Option<u64> {
    let net = Path::new("/proc").join(pid.to_string()).join("net");
    let read = |file: &str| std::fs::read_to_string(net.join(file)).ok();
    unicast_received(&read("netstat")?, &read("snmp6")?, &read("dev")?)
}

/// The counting itself, over the texts of `netstat`, `snmp6` and `dev`.
fn unicast_received(netstat: &str, snmp6: &str, dev: &str) -> Option<u64> {
    // IpExt's names and values are two lines of netstat, in the same order.
    let mut ipext = netstat.lines().filter_map(|l| l.strip_prefix("IpExt:"));
    let (names, values) = (ipext.next()?, ipext.next()?);
    let v4: Vec<(&str, u64)> =
        names.split_whitespace().zip(values.split_whitespace().filter_map(|v| v.parse().ok())).collect();
    let v6: Vec<(&str, u64)> = snmp6
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?, words.next()?.parse().ok()?))
        })
        .collect();
    let field =
        |table: &[(&str, u64)], name: &str| table.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v);
    // Loopback's device counters include a 14-byte link header per packet that IP's do not.
    let lo = dev.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix("lo:")?;
        let mut words = rest.split_whitespace().filter_map(|w| w.parse::<u64>().ok());
        let (bytes, packets) = (words.next()?, words.next()?);
        Some(bytes.saturating_sub(14 * packets))
    });
    let unicast = (field(&v4, "InOctets") + field(&v6, "Ip6InOctets")).saturating_sub(
        field(&v4, "InMcastOctets") + field(&v4, "InBcastOctets") + field(&v6, "Ip6InMcastOctets"),
    );
    Some(unicast.saturating_sub(lo.unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unicast_bytes_without_multicast_and_loopback() {
        let netstat = "TcpExt: SyncookiesSent\nTcpExt: 0\n\
                       IpExt: InNoRoutes InMcastPkts InOctets OutOctets InMcastOctets InBcastOctets\n\
                       IpExt: 0 1 5000040 900 40 0\n";
        let snmp6 = "Ip6InReceives                   \t2\nIp6InOctets                     \t1172\n\
                     Ip6InMcastOctets                \t172\n";
        let dev = "Inter-|   Receive\n face |bytes    packets errs\n    lo:    1140      10    0\n\
                   eth0:5001468    3400    0\n";
        // 5,000,040 + 1,172 - 40 - 172 - (1,140 - 14 * 10)
        assert_eq!(unicast_received(netstat, snmp6, dev), Some(5_000_000));
        assert_eq!(unicast_received("TcpExt: x\nTcpExt: 0\n", snmp6, dev), None, "no IpExt: unknown");
    }

    #[test]
    fn this_process_can_be_read() {
        assert!(received(std::process::id()).is_some());
    }
}
