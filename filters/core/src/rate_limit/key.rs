//! What a request is counted under: Kong's `limit_by`, read from the request through
//! [`RequestFacts`], falling back to the client IP whenever the chosen identifier is
//! missing, as Kong does.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::identity::Identity;

use super::headers::push_decimal;
use super::slot::hash;

/// What the limiter may ask about a request. The glue answers from the host, lazily, so a
/// policy limited by IP never reads the identity and one limited by consumer never parses
/// `X-Forwarded-For`.
pub trait RequestFacts {
    /// Envoy's `source.address`: the downstream peer as `ip:port`.
    fn source_address(&mut self) -> Option<String>;
    /// The first value of a request header (lower-case name).
    fn header(&mut self, name: &str) -> Option<String>;
    /// `:path`, query included.
    fn path(&mut self) -> Option<String>;
    /// The identity the jwt filter handed over in filter state.
    fn identity(&mut self) -> Option<Identity>;
    /// Envoy's `xds.cluster_name`: the upstream cluster of the matched route.
    fn service(&mut self) -> Option<String>;
}

/// Kong's `limit_by`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LimitBy {
    /// The consumer id; a token from a JWKS provider has none, so its username (`sub`);
    /// then the credential; then the IP. Kong's anonymous consumer is a consumer: all
    /// anonymous callers share its counter.
    Consumer,
    /// The credential (a consumer credential's `key`, or a provider's name: one counter per
    /// provider); then the IP.
    Credential,
    /// The client IP (see [`client_ip`]).
    Ip,
    /// The value of this request header; then the IP.
    Header(String),
    /// Kong's: requests whose path (query aside) is exactly this one share a counter; every
    /// other request is counted by IP.
    Path(String),
    /// The Envoy route name: one counter per route for all clients; then the IP.
    Route,
    /// The upstream cluster (Kong's service): one counter per cluster; then the IP.
    Service,
}

impl LimitBy {
    /// The config value.
    pub fn name(&self) -> &'static str {
        match self {
            LimitBy::Consumer => "consumer",
            LimitBy::Credential => "credential",
            LimitBy::Ip => "ip",
            LimitBy::Header(_) => "header",
            LimitBy::Path(_) => "path",
            LimitBy::Route => "route",
            LimitBy::Service => "service",
        }
    }

    /// The key this request counts under.
    pub fn key(
        &self,
        route: Option<&str>,
        facts: &mut dyn RequestFacts,
        trusted_hops: u32,
    ) -> LimitKey {
        let found = match self {
            LimitBy::Consumer => facts.identity().and_then(|id| {
                let Identity {
                    consumer_id,
                    username,
                    credential,
                    ..
                } = id;
                consumer_id
                    .map(|v| LimitKey::new(KeyKind::Consumer, v))
                    .or_else(|| username.map(|v| LimitKey::new(KeyKind::Username, v)))
                    .or_else(|| credential.map(|v| LimitKey::new(KeyKind::Credential, v)))
            }),
            LimitBy::Credential => facts
                .identity()
                .and_then(|id| id.credential)
                .map(|v| LimitKey::new(KeyKind::Credential, v)),
            LimitBy::Ip => None,
            LimitBy::Header(name) => facts
                .header(name)
                .map(|v| LimitKey::new(KeyKind::Header, header_key(name, &v))),
            LimitBy::Path(path) => facts
                .path()
                .filter(|p| without_query(p) == path)
                .map(|_| LimitKey::new(KeyKind::Path, path.clone())),
            LimitBy::Route => route.map(|r| LimitKey::new(KeyKind::Route, r.to_owned())),
            LimitBy::Service => facts.service().map(|s| LimitKey::new(KeyKind::Service, s)),
        };
        found.unwrap_or_else(|| match client_ip(facts, trusted_hops) {
            Some(ip) => LimitKey::new(KeyKind::Ip, ip_text(ip)),
            None => LimitKey::new(KeyKind::Unknown, String::new()),
        })
    }
}

/// What a key identifies; part of its hash, so a header value never shares a counter with
/// an IP that is spelled the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Consumer,
    Username,
    Credential,
    Ip,
    Header,
    Path,
    Route,
    Service,
    /// No client address at all (a host that gives none): every such request shares one
    /// counter, which limits them together rather than not at all.
    Unknown,
}

impl KeyKind {
    pub fn tag(self) -> &'static str {
        match self {
            KeyKind::Consumer => "consumer",
            KeyKind::Username => "username",
            KeyKind::Credential => "credential",
            KeyKind::Ip => "ip",
            KeyKind::Header => "header",
            KeyKind::Path => "path",
            KeyKind::Route => "route",
            KeyKind::Service => "service",
            KeyKind::Unknown => "unknown",
        }
    }
}

/// The identifier one request counts under for one policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitKey {
    pub kind: KeyKind,
    pub value: String,
}

impl LimitKey {
    pub fn new(kind: KeyKind, value: String) -> LimitKey {
        LimitKey { kind, value }
    }

    /// For the log line of a limited request: `ip:203.0.113.7`, `consumer:mobile-app`. A
    /// header's value may be a secret (an API key), so only its name and a hash show.
    pub fn describe(&self) -> String {
        match self.kind {
            KeyKind::Header => {
                let name = self.value.split(':').next().unwrap_or_default();
                let h = hash(&[self.value.as_bytes()]);
                format!("header:{name}#{:08x}", h >> 32)
            }
            KeyKind::Unknown => "unknown".to_owned(),
            kind => format!("{}:{}", kind.tag(), printable(&self.value, 128)),
        }
    }
}

/// `text` cut to `max` characters, control characters escaped: safe in one log line.
fn printable(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_default)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// Longest part of a header value a key is made of: hashing is per request, and the client
/// chooses the value. Longer values count under their first bytes and their length (values
/// that long and that alike share a counter: limited together, never let through).
pub const MAX_HEADER_KEY_BYTES: usize = 1_024;

fn header_key(name: &str, value: &str) -> String {
    if value.len() <= MAX_HEADER_KEY_BYTES {
        return format!("{name}:{value}");
    }
    let mut end = MAX_HEADER_KEY_BYTES;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{name}:{}…{}",
        value.get(..end).unwrap_or_default(),
        value.len()
    )
}

/// `path` without its query string.
pub fn without_query(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The client IP: the downstream peer (`source.address`), or with `trusted_hops` proxies
/// in front of Envoy, the address the outermost trusted proxy saw, as Envoy's
/// `xff_num_trusted_hops` picks it: count `trusted_hops` entries from the right of
/// `X-Forwarded-For` (the peer itself being hop 0). When the header has fewer entries than
/// that, or the entry there is not an IP, the request did not come through the trusted
/// proxies as configured and the peer is used, as Envoy falls back: a client never picks its
/// own counter by writing `X-Forwarded-For`.
///
/// Prefer Envoy's own `xff_num_trusted_hops` on the connection manager, which also fixes
/// `source.address`; this setting is for when that cannot be changed.
pub fn client_ip(facts: &mut dyn RequestFacts, trusted_hops: u32) -> Option<IpAddr> {
    let peer = facts.source_address().and_then(|a| parse_ip(&a));
    if trusted_hops == 0 {
        return peer;
    }
    let forwarded = facts.header("x-forwarded-for");
    let chosen = forwarded.as_deref().and_then(|xff| {
        let entries: Vec<&str> = xff.split(',').map(str::trim).collect();
        let from_right = usize::try_from(trusted_hops).ok()?;
        let index = entries.len().checked_sub(from_right)?;
        entries.get(index).and_then(|e| parse_ip(e))
    });
    chosen.or(peer)
}

/// An IP from `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80` or `[::1]`.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    // Envoy's `source.address` is `ip:port`: try that shape first, it is every request's.
    if let Some((host, port)) = text.rsplit_once(':') {
        if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) {
            return host.parse::<Ipv4Addr>().ok().map(IpAddr::V4);
        }
    }
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse().ok())
        })
}

/// The canonical text of an IP (`::0001` and `::1` are one client); IPv4 without the
/// formatting machinery, as every request needs it.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut out = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                push_decimal(&mut out, u64::from(octet));
            }
            out
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Facts a test writes down.
    #[derive(Clone, Debug, Default)]
    pub struct Facts {
        pub source: Option<String>,
        pub headers: Vec<(String, String)>,
        pub path: Option<String>,
        pub identity: Option<Identity>,
        pub service: Option<String>,
    }

    impl Facts {
        pub fn from_ip(ip: &str) -> Facts {
            let source = if ip.contains(':') {
                format!("[{ip}]:40000")
            } else {
                format!("{ip}:40000")
            };
            Facts {
                source: Some(source),
                ..Facts::default()
            }
        }

        pub fn header(mut self, name: &str, value: &str) -> Facts {
            self.headers.push((name.to_owned(), value.to_owned()));
            self
        }
    }

    impl RequestFacts for Facts {
        fn source_address(&mut self) -> Option<String> {
            self.source.clone()
        }
        fn header(&mut self, name: &str) -> Option<String> {
            self.headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        }
        fn path(&mut self) -> Option<String> {
            self.path.clone()
        }
        fn identity(&mut self) -> Option<Identity> {
            self.identity.clone()
        }
        fn service(&mut self) -> Option<String> {
            self.service.clone()
        }
    }

    fn key(by: LimitBy, facts: &mut Facts) -> String {
        by.key(Some("payments"), facts, 0).describe()
    }

    fn consumer() -> Identity {
        Identity {
            consumer_id: Some("c-1".into()),
            username: Some("mobile-app".into()),
            credential: Some("mobile-key".into()),
            ..Identity::default()
        }
    }

    #[test]
    fn consumer_falls_back_to_username_then_credential_then_ip() {
        let mut facts = Facts::from_ip("203.0.113.7");
        facts.identity = Some(consumer());
        assert_eq!(key(LimitBy::Consumer, &mut facts), "consumer:c-1");
        facts.identity = Some(Identity {
            consumer_id: None,
            ..consumer()
        });
        assert_eq!(key(LimitBy::Consumer, &mut facts), "username:mobile-app");
        facts.identity = Some(Identity {
            credential: Some("issuer-a".into()),
            ..Identity::default()
        });
        assert_eq!(key(LimitBy::Consumer, &mut facts), "credential:issuer-a");
        facts.identity = None;
        assert_eq!(key(LimitBy::Consumer, &mut facts), "ip:203.0.113.7");
    }

    #[test]
    fn credential_falls_back_to_ip() {
        let mut facts = Facts::from_ip("203.0.113.7");
        facts.identity = Some(consumer());
        assert_eq!(
            key(LimitBy::Credential, &mut facts),
            "credential:mobile-key"
        );
        facts.identity = Some(Identity::default());
        assert_eq!(key(LimitBy::Credential, &mut facts), "ip:203.0.113.7");
    }

    #[test]
    fn header_path_route_and_service_fall_back_to_ip() {
        let by_header = LimitBy::Header("x-api-key".into());
        let mut facts = Facts::from_ip("2001:db8::1").header("x-api-key", "k-123");
        let with = by_header.key(None, &mut facts, 0);
        assert_eq!(with.value, "x-api-key:k-123");
        assert!(with.describe().starts_with("header:x-api-key#"), "{with:?}");
        assert!(
            !with.describe().contains("k-123"),
            "a header value may be a secret"
        );
        let mut without = Facts::from_ip("2001:db8::1");
        assert_eq!(key(by_header, &mut without), "ip:2001:db8::1");

        let by_path = LimitBy::Path("/payments".into());
        let mut facts = Facts::from_ip("203.0.113.7");
        facts.path = Some("/payments?x=1".into());
        assert_eq!(key(by_path.clone(), &mut facts), "path:/payments");
        facts.path = Some("/payments/1".into());
        assert_eq!(key(by_path, &mut facts), "ip:203.0.113.7");

        let mut facts = Facts::from_ip("203.0.113.7");
        assert_eq!(key(LimitBy::Route, &mut facts), "route:payments");
        assert_eq!(
            LimitBy::Route.key(None, &mut facts, 0).describe(),
            "ip:203.0.113.7"
        );
        assert_eq!(key(LimitBy::Service, &mut facts), "ip:203.0.113.7");
        facts.service = Some("payment-service".into());
        assert_eq!(key(LimitBy::Service, &mut facts), "service:payment-service");
    }

    #[test]
    fn a_huge_header_value_is_keyed_by_a_bounded_prefix_and_its_length() {
        let by = LimitBy::Header("x-api-key".into());
        let huge = "k".repeat(60_000);
        let mut facts = Facts::from_ip("10.0.0.1").header("x-api-key", &huge);
        let key = by.key(None, &mut facts, 0);
        assert!(
            key.value.len() < MAX_HEADER_KEY_BYTES + 40,
            "{}",
            key.value.len()
        );
        assert!(key.value.ends_with("…60000"));
        let mut other = Facts::from_ip("10.0.0.1").header("x-api-key", &"k".repeat(60_001));
        assert_ne!(
            by.key(None, &mut other, 0),
            key,
            "lengths still tell them apart"
        );
    }

    #[test]
    fn no_address_at_all_shares_one_unknown_counter() {
        let mut facts = Facts::default();
        let got = LimitBy::Ip.key(None, &mut facts, 0);
        assert_eq!(got.kind, KeyKind::Unknown);
        assert_eq!(got.describe(), "unknown");
    }

    #[test]
    fn trusted_hops_pick_the_entry_the_outermost_trusted_proxy_wrote() {
        let cases = [
            // (xff, hops, expected)
            (None, 0, "10.0.0.2"),
            (Some("198.51.100.1"), 0, "10.0.0.2"),
            (Some("198.51.100.1"), 1, "198.51.100.1"),
            (Some("6.6.6.6, 198.51.100.1"), 1, "198.51.100.1"),
            (Some("6.6.6.6,198.51.100.1, 10.0.0.1"), 2, "198.51.100.1"),
            // Fewer entries than trusted hops: the peer, never a client-written entry.
            (Some("198.51.100.1"), 2, "10.0.0.2"),
            (None, 1, "10.0.0.2"),
            // Not an IP where a trusted proxy should have written one.
            (Some("6.6.6.6, garbage"), 1, "10.0.0.2"),
            (Some("[2001:db8::7]:443"), 1, "2001:db8::7"),
            (Some("198.51.100.1:5555"), 1, "198.51.100.1"),
        ];
        for (xff, hops, expected) in cases {
            let mut facts = Facts::from_ip("10.0.0.2");
            if let Some(xff) = xff {
                facts = facts.header("x-forwarded-for", xff);
            }
            let got = client_ip(&mut facts, hops).map(|ip| ip.to_string());
            assert_eq!(got.as_deref(), Some(expected), "{xff:?} with {hops} hops");
        }
    }

    #[test]
    fn ip_spellings_normalise_to_one_key() {
        for text in ["::1", "[::1]:8080", "0:0:0:0:0:0:0:1", "[::1]"] {
            assert_eq!(
                parse_ip(text).map(|ip| ip.to_string()).as_deref(),
                Some("::1")
            );
        }
        assert_eq!(parse_ip("not an ip"), None);
    }

    #[test]
    fn log_descriptions_are_one_safe_line() {
        let key = LimitKey::new(KeyKind::Consumer, "a\r\nb".into());
        assert_eq!(key.describe(), "consumer:a\\r\\nb");
        let long = LimitKey::new(KeyKind::Route, "r".repeat(300));
        assert!(long.describe().chars().count() < 140);
    }
}
