//! Hosts named in pool configs (NFS servers, iSCSI portals): checked before
//! they reach a URL, an option string or XML, and written the way URLs and
//! `host:port` forms want them.

use std::net::IpAddr;

/// An IP address or a DNS host name (labels of letters, digits and '-',
/// not at either end): nothing that could add a port, a path or options.
pub fn is_host(s: &str) -> bool {
    let host_name = s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    host_name || s.parse::<IpAddr>().is_ok()
}

/// The host as it goes before `:port` or into a URL: an IPv6 address in
/// brackets.
pub fn bracketed(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_owned(),
    }
}
