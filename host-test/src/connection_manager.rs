//! What Envoy's HTTP connection manager does to a request before any filter runs: repeated
//! inline headers joined, `x-forwarded-*` and `x-request-id` added, `source.address` decided.

use crate::headers::Headers;
use crate::request::Request;

static NEXT_REQUEST_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Envoy's "inline" request headers: a repeated one arrives as one header, its values joined
/// with `,` (seen by the probe conformance test for `authorization`, `user-agent` and
/// `x-forwarded-for`; `cookie` and other headers stay repeated).
const COALESCED: [&str; 8] = [
    "authorization",
    "user-agent",
    "x-forwarded-for",
    "content-type",
    "via",
    "te",
    "x-request-id",
    "x-forwarded-host",
];

/// What Envoy's connection manager does to a request before the filters see it: repeated
/// inline headers joined; with `use_remote_address`, the peer appended to
/// `x-forwarded-for` and `x-forwarded-proto` and `x-envoy-external-address` set (each in
/// place when the client sent it, else added in that order); `x-request-id` added last.
pub(crate) fn connection_manager_headers(request: &Request) -> Headers {
    let mut joined = Headers::default();
    for (name, value) in request.headers.pairs.iter().cloned() {
        let inline = COALESCED.contains(&name.as_str());
        match joined.pairs.iter_mut().find(|(k, _)| inline && *k == name) {
            Some((_, existing)) => {
                existing.push(b',');
                existing.extend_from_slice(&value);
            }
            None => joined.pairs.push((name, value)),
        }
    }
    let mut headers = joined;
    if request.use_remote_address {
        let peer = address_ip(&request.source);
        let appended = if is_loopback(peer) {
            request.envoy_address.as_str()
        } else {
            peer
        };
        match headers
            .pairs
            .iter_mut()
            .find(|(k, _)| k == "x-forwarded-for")
        {
            Some((_, xff)) => {
                // An empty header gets the address alone (measured).
                if !xff.is_empty() {
                    xff.push(b',');
                }
                xff.extend_from_slice(appended.as_bytes());
            }
            None => headers.add("x-forwarded-for", appended.as_bytes()),
        }
        set_in_place(&mut headers, "x-forwarded-proto", b"http");
        set_in_place(&mut headers, "x-envoy-external-address", peer.as_bytes());
    } else if headers.get("x-forwarded-proto").is_none() {
        headers.add("x-forwarded-proto", b"http");
    }
    if headers.get("x-request-id").is_none() {
        let id = NEXT_REQUEST_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        headers.add(
            "x-request-id",
            format!("00000000-0000-4000-8000-{id:012}").as_bytes(),
        );
    }
    headers
}

/// Sets `name` where the client put it (its later copies removed), or at the end.
fn set_in_place(headers: &mut Headers, name: &str, value: &[u8]) {
    match headers.pairs.iter().position(|(k, _)| k == name) {
        Some(at) => {
            let mut index = 0;
            headers.pairs.retain(|(k, _)| {
                index += 1;
                index - 1 == at || k != name
            });
            if let Some((_, v)) = headers.pairs.get_mut(at) {
                *v = value.to_vec();
            }
        }
        None => headers.add(name, value),
    }
}

/// The IP of an `ip:port` / `[ip]:port` address, as text.
fn address_ip(address: &str) -> &str {
    match address.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(ip, _)| ip),
        None => address.rsplit_once(':').map_or(address, |(ip, _)| ip),
    }
}

/// Envoy's `isLoopbackAddress`: 127.0.0.0/8 and `::1`.
fn is_loopback(ip: &str) -> bool {
    match ip.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(std::net::IpAddr::V6(v6)) => v6.is_loopback(),
        Err(_) => false,
    }
}

/// `source.address` as Envoy's connection manager decides it: with its default
/// `use_remote_address: false`, the last `x-forwarded-for` entry when it is an IP (written
/// `ip:0` / `[ip]:0`), which the client controls; the peer address otherwise (no header, an
/// entry that is not an IP, an empty last entry).
pub(crate) fn downstream_address(request: &Request, headers: &Headers) -> String {
    if request.use_remote_address {
        return request.source.clone();
    }
    headers
        .get_str("x-forwarded-for")
        .and_then(|xff| xff.rsplit(',').next().and_then(forwarded_address))
        .unwrap_or_else(|| request.source.clone())
}

/// An `x-forwarded-for` entry as Envoy writes it into `source.address`, or `None` when Envoy
/// would not take it: not an IP, a port given, or a zone id by interface name (Envoy
/// resolves one of its machine's interface names to the index, `%eth0` → `%4`; host-test
/// knows no interfaces).
fn forwarded_address(entry: &str) -> Option<String> {
    let entry = entry.trim();
    let (ip, zone) = match entry.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (entry, None),
    };
    match (ip.parse::<std::net::IpAddr>().ok()?, zone) {
        (std::net::IpAddr::V4(v4), None) => Some(format!("{v4}:0")),
        (std::net::IpAddr::V6(v6), None) => Some(format!("[{v6}]:0")),
        (std::net::IpAddr::V6(v6), Some(zone))
            if !zone.is_empty() && zone.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(format!("[{v6}%{zone}]:0"))
        }
        _ => None,
    }
}
