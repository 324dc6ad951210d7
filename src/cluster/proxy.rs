//! Whether the API server is reached through `HTTPS_PROXY`, decided like kubectl
//! (Go's `http.ProxyFromEnvironment`): never for loopback hosts (a kind cluster
//! at 127.0.0.1), never for hosts listed in `NO_PROXY`. kube 5 applies
//! `HTTPS_PROXY` itself but checks `NO_PROXY` against the proxy's own address,
//! so the decision is taken here.

use std::net::IpAddr;

/// True when a connection to `host` (a name or an IP address, IPv6 with or
/// without brackets) on `port` must not go through the environment's proxy.
pub(crate) fn bypasses_proxy(host: &str, port: u16, no_proxy: Option<&str>) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let address = host.parse::<IpAddr>().ok();
    if host == "localhost"
        || host.ends_with(".localhost")
        || address.is_some_and(|ip| ip.is_loopback())
    {
        return true;
    }
    let Some(no_proxy) = no_proxy else {
        return false;
    };
    no_proxy
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .any(|entry| entry_matches(entry, &host, address, port))
}

fn entry_matches(entry: &str, host: &str, address: Option<IpAddr>, port: u16) -> bool {
    if entry == "*" {
        return true;
    }
    if let (Some((network, prefix)), Some(address)) = (entry.split_once('/'), address) {
        return cidr_contains(network, prefix, address);
    }
    let (name, entry_port) = split_port(entry);
    if entry_port.is_some_and(|entry_port| entry_port != port) {
        return false;
    }
    let name = name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("*.")
        .trim_start_matches('.')
        .to_ascii_lowercase();
    match (name.parse::<IpAddr>(), address) {
        (Ok(entry_address), Some(address)) => entry_address == address,
        (Ok(_), None) => false,
        (Err(_), _) => host == name || host.ends_with(&format!(".{name}")),
    }
}

/// `host:port` into its parts; a bare IPv6 address has no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if entry.parse::<IpAddr>().is_ok() {
        return (entry, None);
    }
    match entry.rsplit_once(':') {
        Some((name, port)) => match port.parse() {
            Ok(port) => (name, Some(port)),
            Err(_) => (entry, None),
        },
        None => (entry, None),
    }
}

fn cidr_contains(network: &str, prefix: &str, address: IpAddr) -> bool {
    let (Ok(network), Ok(prefix)) = (network.parse::<IpAddr>(), prefix.parse::<u32>()) else {
        return false;
    };
    match (network, address) {
        (IpAddr::V4(network), IpAddr::V4(address)) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            u32::from(network) & mask == u32::from(address) & mask
        }
        (IpAddr::V6(network), IpAddr::V6(address)) if prefix <= 128 => {
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            u128::from(network) & mask == u128::from(address) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_never_goes_through_the_proxy() {
        for host in [
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
            "::1",
            "localhost",
            "api.localhost",
        ] {
            assert!(bypasses_proxy(host, 6443, None), "{host}");
        }
        assert!(!bypasses_proxy("10.0.0.1", 6443, None));
        assert!(!bypasses_proxy("api.example.com", 443, None));
    }

    #[test]
    fn no_proxy_entries() {
        let no_proxy = Some(
            " .corp.example, internal.test:6443, 10.0.0.0/8, fd00::/8, 192.168.1.5, *.wild.test ",
        );
        let bypassed = [
            ("api.corp.example", 443),
            ("corp.example", 443),
            ("internal.test", 6443),
            ("a.internal.test", 6443),
            ("10.20.30.40", 6443),
            ("[fd00::1]", 6443),
            ("192.168.1.5", 6443),
            ("x.wild.test", 443),
            ("API.CORP.EXAMPLE", 443),
        ];
        for (host, port) in bypassed {
            assert!(bypasses_proxy(host, port, no_proxy), "{host}:{port}");
        }
        let proxied = [
            ("internal.test", 443),
            ("notcorp.example", 443),
            ("11.0.0.1", 6443),
            ("192.168.1.6", 6443),
            ("fe80::1", 6443),
        ];
        for (host, port) in proxied {
            assert!(!bypasses_proxy(host, port, no_proxy), "{host}:{port}");
        }
        assert!(bypasses_proxy("anything.test", 1, Some("*")));
        assert!(!bypasses_proxy(
            "anything.test",
            1,
            Some("1.2.3.4/99, bad/x")
        ));
    }
}
