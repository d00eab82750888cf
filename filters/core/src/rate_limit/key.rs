//! What a request is counted under: Kong's `limit_by`, read from the request through
//! [`RequestFacts`], falling back to the client IP whenever the chosen identifier is
//! missing, as Kong does. A client IP is keyed by [`ip_key`]: IPv4 as is (an IPv4-mapped
//! IPv6 address too), IPv6 by its prefix (`/64` by default), zone ids dropped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::decimal::Decimal;
use crate::identity::Identity;

use super::slot::hash;

/// What the limiter may ask about a request. The glue answers from the host, lazily, so a
/// policy limited by IP never reads the identity and one limited by consumer never parses
/// `X-Forwarded-For`.
pub trait RequestFacts {
    /// Envoy's `source.address`: the downstream peer as `ip:port`.
    fn source_address(&mut self) -> Option<String>;
    /// The first value of a request header (lower-case name): what Envoy's
    /// `get_header_map_value` gives. Only for a header Envoy joins into one
    /// (`x-forwarded-for`).
    fn header(&mut self, name: &str) -> Option<String>;
    /// Every value of a request header (lower-case name), in order: a client may send a
    /// header twice, and Envoy hands a filter asking for one value only the first.
    /// `Err` when the host cannot give the request's headers.
    fn header_values(&mut self, name: &str) -> Result<Vec<String>, String>;
    /// `:path`, query included.
    fn path(&mut self) -> Option<String>;
    /// The identity the jwt filter handed over in filter state, lent: a key needs one of
    /// its strings, not a copy of the whole identity.
    fn identity(&mut self) -> Option<&Identity>;
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
    /// Kong's: requests whose path (query aside) is this one share a counter; every other
    /// request is counted by IP. Compared normalised (see [`super::path`]): `//payments`,
    /// `/%70ayments`, `/payments/`, `/payments;x=1` are `/payments`. Held normalised.
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

    /// The key this request counts under, or why it cannot be counted.
    pub fn key(
        &self,
        route: Option<&str>,
        facts: &mut dyn RequestFacts,
        client: ClientIpRule,
    ) -> Result<LimitKey, KeyError> {
        let found = match self {
            LimitBy::Consumer => facts.identity().and_then(|id| {
                let Identity {
                    consumer_id,
                    username,
                    credential,
                    ..
                } = id;
                let key = |kind, v: &String| LimitKey::new(kind, v.clone());
                consumer_id
                    .as_ref()
                    .map(|v| key(KeyKind::Consumer, v))
                    .or_else(|| username.as_ref().map(|v| key(KeyKind::Username, v)))
                    .or_else(|| credential.as_ref().map(|v| key(KeyKind::Credential, v)))
            }),
            LimitBy::Credential => facts
                .identity()
                .and_then(|id| id.credential.clone())
                .map(|v| LimitKey::new(KeyKind::Credential, v)),
            LimitBy::Ip => None,
            LimitBy::Header(name) => header_value(name, facts)?
                .map(|v| LimitKey::new(KeyKind::Header, header_key(name, &v))),
            LimitBy::Path(path) => facts
                .path()
                .filter(|p| crate::path::is(p, path))
                .map(|_| LimitKey::new(KeyKind::Path, path.clone())),
            LimitBy::Route => route.map(|r| LimitKey::new(KeyKind::Route, r.to_owned())),
            LimitBy::Service => facts.service().map(|s| LimitKey::new(KeyKind::Service, s)),
        };
        Ok(
            found.unwrap_or_else(|| match client_ip(facts, client.trusted_hops) {
                Some(ip) => LimitKey::new(KeyKind::Ip, ip_key(ip, client.ipv6_prefix_length)),
                None => LimitKey::new(KeyKind::Unknown, String::new()),
            }),
        )
    }
}

/// Why a request cannot be counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyError {
    /// The counted header came more than once, with different values. An upstream or a
    /// filter checking the header may read any one copy (Envoy hands a filter the first,
    /// many frameworks the last), so counting under any one of them could count the
    /// client's throw-away copy while the real one is used; joined, each throw-away value
    /// would still make a fresh counter. The request is refused (400), counted nowhere.
    RepeatedHeader { name: String, copies: usize },
    /// The host could not give the request's headers: a fault, `fault_tolerant` decides.
    Host(String),
}

impl KeyError {
    /// The status a refused request gets.
    pub const STATUS: u16 = 400;

    /// Kong-style JSON body of the refusal.
    pub fn body(&self) -> String {
        let message = match self {
            KeyError::RepeatedHeader { name, .. } => {
                format!("The {name} header must be sent once")
            }
            KeyError::Host(_) => "An unexpected error occurred".to_owned(),
        };
        serde_json::json!({ "message": message }).to_string()
    }

    /// For the log line.
    pub fn describe(&self) -> String {
        match self {
            KeyError::RepeatedHeader { name, copies } => {
                format!("{name} sent {copies} times with different values")
            }
            KeyError::Host(e) => format!("request headers unreadable: {e}"),
        }
    }
}

/// The one value of header `name`: none when absent, the value when every copy the client
/// sent agrees (a header repeated verbatim is still one value), refused otherwise.
fn header_value(name: &str, facts: &mut dyn RequestFacts) -> Result<Option<String>, KeyError> {
    let mut values = facts.header_values(name).map_err(KeyError::Host)?;
    let copies = values.len();
    let Some(first) = values.pop() else {
        return Ok(None);
    };
    if values.iter().any(|v| *v != first) {
        return Err(KeyError::RepeatedHeader {
            name: name.to_owned(),
            copies,
        });
    }
    Ok(Some(first))
}

/// How a client address becomes a key: which address is the client's
/// (`xff_num_trusted_hops`), and how much of an IPv6 one names the client
/// (`ipv6_prefix_length`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIpRule {
    pub trusted_hops: u32,
    pub ipv6_prefix_length: u8,
}

impl Default for ClientIpRule {
    fn default() -> ClientIpRule {
        ClientIpRule {
            trusted_hops: 0,
            ipv6_prefix_length: DEFAULT_IPV6_PREFIX_LENGTH,
        }
    }
}

/// `ipv6_prefix_length` when left out: the /64 every IPv6 subscriber gets at least (a home,
/// a phone, a VM), from which it can pick 2^64 addresses.
pub const DEFAULT_IPV6_PREFIX_LENGTH: u8 = 64;

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

/// The client IP: the downstream peer (`source.address`), or with `trusted_hops` proxies
/// in front of Envoy, the address the outermost of them saw — the entry Envoy's own
/// `xff_num_trusted_hops` on the connection manager would take. Envoy takes "the Nth
/// address from the right of `X-Forwarded-For`" as the header *arrived*; with
/// `use_remote_address: true` it then appends the peer (or, for a loopback peer, its own
/// address) before any filter runs, so from here that entry is the (N+1)th from the right:
/// the last entry is skipped. With `use_remote_address: false` Envoy appends nothing and
/// takes the (N+1)th from the right itself. Both measured against Envoy 1.40.
///
/// When the header has fewer entries than that, or the entry there is not an IP, the
/// request did not come through the trusted proxies as configured and the peer is used, as
/// Envoy falls back: a client never picks its own counter by writing `X-Forwarded-For`.
/// Pitfall: with the connection manager's `skip_xff_append: true` nothing is appended and
/// this is one entry off, towards the client's side.
///
/// Prefer Envoy's own `xff_num_trusted_hops` on the connection manager, which also fixes
/// `source.address`; this setting is for when that cannot be changed. Never both: the
/// proxies would be skipped twice.
pub fn client_ip(facts: &mut dyn RequestFacts, trusted_hops: u32) -> Option<IpAddr> {
    if trusted_hops > 0 {
        let forwarded = facts.header("x-forwarded-for");
        let chosen = forwarded.as_deref().and_then(|xff| {
            let skip = usize::try_from(trusted_hops).ok()?;
            xff.rsplit(',').nth(skip).and_then(parse_ip)
        });
        if chosen.is_some() {
            return chosen;
        }
    }
    facts.source_address().and_then(|a| parse_ip(&a))
}

/// An IP from `1.2.3.4`, `1.2.3.4:80`, `::1`, `[::1]:80` or `[::1]`; an IPv6 zone id
/// (`fe80::1%eth0`, `[fe80::1%4]:0` as Envoy writes it) is dropped: it names an interface of
/// the machine that wrote the address, not a client.
pub fn parse_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !after.is_empty() && !after.strip_prefix(':').is_some_and(is_port) {
            return None;
        }
        return parse_v6(inside).map(IpAddr::V6);
    }
    // Envoy's `source.address` is `ip:port`: that shape first, it is every request's.
    if let Some((host, port)) = text.rsplit_once(':') {
        if !host.contains(':') {
            return if is_port(port) {
                host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
            } else {
                None
            };
        }
    }
    match text.parse::<Ipv4Addr>() {
        Ok(v4) => Some(IpAddr::V4(v4)),
        Err(_) => parse_v6(text).map(IpAddr::V6),
    }
}

/// An IPv6 address, its zone id (after `%`) dropped.
fn parse_v6(text: &str) -> Option<Ipv6Addr> {
    text.split_once('%')
        .map_or(text, |(address, _zone)| address)
        .parse()
        .ok()
}

fn is_port(text: &str) -> bool {
    (1..=5).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit())
}

/// The key of a client IP: one per client, not per address. An IPv4-mapped IPv6 address
/// (`::ffff:203.0.113.7`, what a dual-stack socket reports) is that IPv4 client; an IPv6
/// address counts by its first `ipv6_prefix_length` bits (`2001:db8:1:2::/64`), since one
/// subscriber holds a whole /64 (or more) and can use a fresh address per request.
pub fn ip_key(ip: IpAddr, ipv6_prefix_length: u8) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => ipv4_text(v4),
        IpAddr::V6(v6) if ipv6_prefix_length >= 128 => v6.to_string(),
        IpAddr::V6(v6) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(ipv6_prefix_length))
                .unwrap_or(0);
            let network = Ipv6Addr::from(u128::from(v6) & mask);
            format!("{network}/{ipv6_prefix_length}")
        }
    }
}

/// An IPv4 address's text without the formatting machinery: every request by IP needs it.
fn ipv4_text(v4: Ipv4Addr) -> String {
    let mut out = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        out.push_str(&Decimal::new(u64::from(octet)));
    }
    out
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
        /// `header_values` fails, as a host whose header map is unreadable.
        pub broken_header_map: bool,
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
        fn header_values(&mut self, name: &str) -> Result<Vec<String>, String> {
            if self.broken_header_map {
                return Err("the host's header map is malformed".into());
            }
            Ok(self
                .headers
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .collect())
        }
        fn path(&mut self) -> Option<String> {
            self.path.clone()
        }
        fn identity(&mut self) -> Option<&Identity> {
            self.identity.as_ref()
        }
        fn service(&mut self) -> Option<String> {
            self.service.clone()
        }
    }

    fn key(by: LimitBy, facts: &mut Facts) -> String {
        by.key(Some("payments"), facts, ClientIpRule::default())
            .unwrap()
            .describe()
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
        let with = by_header
            .key(None, &mut facts, ClientIpRule::default())
            .unwrap();
        assert_eq!(with.value, "x-api-key:k-123");
        assert!(with.describe().starts_with("header:x-api-key#"), "{with:?}");
        assert!(
            !with.describe().contains("k-123"),
            "a header value may be a secret"
        );
        let mut without = Facts::from_ip("2001:db8::1");
        assert_eq!(key(by_header, &mut without), "ip:2001:db8::/64");

        let by_path = LimitBy::Path("/payments".into());
        let mut facts = Facts::from_ip("203.0.113.7");
        facts.path = Some("/payments?x=1".into());
        assert_eq!(key(by_path.clone(), &mut facts), "path:/payments");
        facts.path = Some("//payments/?x=1".into());
        assert_eq!(key(by_path.clone(), &mut facts), "path:/payments");
        facts.path = Some("/payments/1".into());
        assert_eq!(key(by_path, &mut facts), "ip:203.0.113.7");

        let mut facts = Facts::from_ip("203.0.113.7");
        assert_eq!(key(LimitBy::Route, &mut facts), "route:payments");
        assert_eq!(
            LimitBy::Route
                .key(None, &mut facts, ClientIpRule::default())
                .unwrap()
                .describe(),
            "ip:203.0.113.7"
        );
        assert_eq!(key(LimitBy::Service, &mut facts), "ip:203.0.113.7");
        facts.service = Some("payment-service".into());
        assert_eq!(key(LimitBy::Service, &mut facts), "service:payment-service");
    }

    #[test]
    fn a_header_sent_twice_with_different_values_is_refused_never_counted_under_one() {
        let by = LimitBy::Header("x-api-key".into());
        let rule = ClientIpRule::default();
        for values in [
            &["random", "k-real"][..],
            &["k-real", "random"],
            &["", "k-real"],
            &["k-real", "k-real", "other"],
        ] {
            let mut facts = values
                .iter()
                .fold(Facts::from_ip("10.0.0.1"), |f, v| f.header("x-api-key", v));
            let refused = by.key(None, &mut facts, rule).unwrap_err();
            assert_eq!(
                refused,
                KeyError::RepeatedHeader {
                    name: "x-api-key".into(),
                    copies: values.len()
                },
                "{values:?}"
            );
            assert_eq!(
                refused.body(),
                r#"{"message":"The x-api-key header must be sent once"}"#
            );
        }
        // The same value twice is one value; another header's copies do not matter.
        let mut facts = Facts::from_ip("10.0.0.1")
            .header("x-api-key", "k-real")
            .header("x-other", "1")
            .header("x-other", "2")
            .header("x-api-key", "k-real");
        assert_eq!(
            by.key(None, &mut facts, rule).unwrap().value,
            "x-api-key:k-real"
        );
    }

    #[test]
    fn unreadable_request_headers_are_a_fault_not_a_fallback() {
        let mut facts = Facts::from_ip("10.0.0.1").header("x-api-key", "k");
        facts.broken_header_map = true;
        let by = LimitBy::Header("x-api-key".into());
        assert!(matches!(
            by.key(None, &mut facts, ClientIpRule::default()),
            Err(KeyError::Host(_))
        ));
    }

    #[test]
    fn a_huge_header_value_is_keyed_by_a_bounded_prefix_and_its_length() {
        let by = LimitBy::Header("x-api-key".into());
        let huge = "k".repeat(60_000);
        let mut facts = Facts::from_ip("10.0.0.1").header("x-api-key", &huge);
        let key = by.key(None, &mut facts, ClientIpRule::default()).unwrap();
        assert!(
            key.value.len() < MAX_HEADER_KEY_BYTES + 40,
            "{}",
            key.value.len()
        );
        assert!(key.value.ends_with("…60000"));
        let mut other = Facts::from_ip("10.0.0.1").header("x-api-key", &"k".repeat(60_001));
        assert_ne!(
            by.key(None, &mut other, ClientIpRule::default()).unwrap(),
            key,
            "lengths still tell them apart"
        );
    }

    #[test]
    fn no_address_at_all_shares_one_unknown_counter() {
        let mut facts = Facts::default();
        let got = LimitBy::Ip
            .key(None, &mut facts, ClientIpRule::default())
            .unwrap();
        assert_eq!(got.kind, KeyKind::Unknown);
        assert_eq!(got.describe(), "unknown");
    }

    #[test]
    fn trusted_hops_pick_the_entry_the_outermost_trusted_proxy_wrote() {
        // As a filter sees it with `use_remote_address: true`: the last entry is what Envoy
        // appended (the peer 10.0.0.2), the client wrote 6.6.6.6, proxies the rest.
        let cases = [
            // (xff, hops, expected)
            (None, 0, "10.0.0.2"),
            (Some("10.0.0.2"), 0, "10.0.0.2"),
            (Some("198.51.100.1,10.0.0.2"), 0, "10.0.0.2"),
            (Some("198.51.100.1,10.0.0.2"), 1, "198.51.100.1"),
            (Some("6.6.6.6, 198.51.100.1,10.0.0.2"), 1, "198.51.100.1"),
            (
                Some("6.6.6.6, 198.51.100.1, 10.0.0.1,10.0.0.2"),
                2,
                "198.51.100.1",
            ),
            (
                Some("6.6.6.6, 198.51.100.1, 10.0.0.1,10.0.0.2"),
                3,
                "6.6.6.6",
            ),
            // Fewer entries than trusted hops: the peer, never a client-written entry.
            (Some("10.0.0.2"), 1, "10.0.0.2"),
            (Some("198.51.100.1,10.0.0.2"), 2, "10.0.0.2"),
            (None, 1, "10.0.0.2"),
            // Not an IP where a trusted proxy should have written one.
            (Some("6.6.6.6, garbage,10.0.0.2"), 1, "10.0.0.2"),
            (Some(",10.0.0.2"), 1, "10.0.0.2"),
            (Some("[2001:db8::7]:443,10.0.0.2"), 1, "2001:db8::7"),
            (Some("198.51.100.1:5555,10.0.0.2"), 1, "198.51.100.1"),
            (Some("::ffff:198.51.100.1,10.0.0.2"), 1, "198.51.100.1"),
        ];
        for (xff, hops, expected) in cases {
            let mut facts = Facts::from_ip("10.0.0.2");
            if let Some(xff) = xff {
                facts = facts.header("x-forwarded-for", xff);
            }
            let got = client_ip(&mut facts, hops).map(|ip| ip.to_canonical().to_string());
            assert_eq!(got.as_deref(), Some(expected), "{xff:?} with {hops} hops");
        }
    }

    #[test]
    fn a_client_forging_forwarded_for_gets_no_fresh_counter() {
        // Behind one trusted proxy (198.51.100.1 is the client it saw), whatever the client
        // writes itself lands left of the proxy's entry.
        for forged in [
            "",
            "1.1.1.1",
            "1.1.1.1, 2.2.2.2",
            "garbage",
            "::1",
            "1.1.1.1,",
        ] {
            let xff = if forged.is_empty() {
                "198.51.100.1,10.0.0.2".to_owned()
            } else {
                format!("{forged}, 198.51.100.1,10.0.0.2")
            };
            let mut facts = Facts::from_ip("10.0.0.2").header("x-forwarded-for", &xff);
            let rule = ClientIpRule {
                trusted_hops: 1,
                ..ClientIpRule::default()
            };
            assert_eq!(
                LimitBy::Ip.key(None, &mut facts, rule).unwrap().describe(),
                "ip:198.51.100.1",
                "{xff}"
            );
        }
    }

    #[test]
    fn with_no_trusted_hops_forwarded_for_is_ignored() {
        let mut facts = Facts::from_ip("10.0.0.2").header("x-forwarded-for", "6.6.6.6");
        assert_eq!(
            LimitBy::Ip
                .key(None, &mut facts, ClientIpRule::default())
                .unwrap()
                .describe(),
            "ip:10.0.0.2"
        );
    }

    #[test]
    fn ip_spellings_normalise_to_one_key() {
        for text in ["::1", "[::1]:8080", "0:0:0:0:0:0:0:1", "[::1]", " ::1 "] {
            assert_eq!(
                parse_ip(text).map(|ip| ip.to_string()).as_deref(),
                Some("::1"),
                "{text}"
            );
        }
        for text in [
            "not an ip",
            "",
            "1.2.3.4:",
            "1.2.3.4:port",
            "1.2.3.4:123456",
            "[::1",
            "[::1]x",
            "[::1]:",
            "1.2.3.4%eth0",
            "[1.2.3.4]",
        ] {
            assert_eq!(parse_ip(text), None, "{text}");
        }
    }

    /// The key `limit_by: ip` gives a request from `source` (Envoy's `source.address`).
    fn ip_key_of(source: &str, prefix: u8) -> String {
        let mut facts = Facts {
            source: Some(source.to_owned()),
            ..Facts::default()
        };
        let rule = ClientIpRule {
            trusted_hops: 0,
            ipv6_prefix_length: prefix,
        };
        LimitBy::Ip.key(None, &mut facts, rule).unwrap().describe()
    }

    #[test]
    fn ipv6_clients_count_by_their_64_by_default() {
        let cases = [
            ("[2001:db8:1:2::1]:40000", "ip:2001:db8:1:2::/64"),
            (
                "[2001:db8:1:2:ffff:ffff:ffff:ffff]:1",
                "ip:2001:db8:1:2::/64",
            ),
            ("[2001:db8:1:3::1]:40000", "ip:2001:db8:1:3::/64"),
            ("[::1]:40000", "ip:::/64"),
        ];
        for (source, expected) in cases {
            assert_eq!(ip_key_of(source, 64), expected, "{source}");
        }
        assert_eq!(
            ip_key_of("[2001:db8:1:2::1]:1", 56),
            "ip:2001:db8:1::/56",
            "a /56 holds the /64s 2001:db8:1:0..ff"
        );
        assert_eq!(ip_key_of("[2001:db8:1:2::1]:1", 128), "ip:2001:db8:1:2::1");
        assert_eq!(ip_key_of("[2001:db8:1:2::1]:1", 33), "ip:2001:db8::/33");
        assert_eq!(
            ip_key_of("[2001:db8:8000::1]:1", 33),
            "ip:2001:db8:8000::/33"
        );
        // IPv4 is never masked.
        assert_eq!(ip_key_of("203.0.113.7:40000", 32), "ip:203.0.113.7");
    }

    #[test]
    fn a_hundred_thousand_addresses_of_one_64_share_one_key() {
        let base = u128::from("2001:db8:aa:bb::".parse::<Ipv6Addr>().unwrap());
        let mut keys = std::collections::HashSet::new();
        let mut rng = 0x9e37_79b9_7f4a_7c15_u64;
        for i in 0..100_000u64 {
            // Scattered over the whole interface identifier, not just its low bits.
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let host = u128::from(rng ^ i);
            let address = Ipv6Addr::from(base | host);
            let spelled = match i % 3 {
                0 => format!("[{address}]:{}", 1 + i % 60_000),
                1 => format!("[{address}%eth{}]:0", i % 7),
                _ => format!("[{address}]"),
            };
            keys.insert(ip_key_of(&spelled, 64));
        }
        assert_eq!(
            keys.into_iter().collect::<Vec<_>>(),
            ["ip:2001:db8:aa:bb::/64"]
        );
    }

    #[test]
    fn an_ipv4_mapped_address_is_that_ipv4_client() {
        for source in [
            "[::ffff:203.0.113.7]:0",
            "[::ffff:cb00:7107]:40000",
            "[0:0:0:0:0:ffff:203.0.113.7]:1",
            "203.0.113.7:40000",
        ] {
            for prefix in [32, 64, 128] {
                assert_eq!(ip_key_of(source, prefix), "ip:203.0.113.7", "{source}");
            }
        }
        // Only `::ffff:0:0/96` is IPv4: other embeddings are IPv6 clients.
        assert_eq!(ip_key_of("[64:ff9b::203.0.113.7]:1", 64), "ip:64:ff9b::/64");
    }

    #[test]
    fn a_zone_id_never_makes_a_new_key() {
        let expected = ip_key_of("[fe80::1]:40000", 128);
        assert_eq!(expected, "ip:fe80::1");
        for source in [
            "[fe80::1%4]:0",
            "[fe80::1%eth0]:40000",
            "[fe80::1%eth1]",
            "fe80::1%25eth0",
            "fe80::1%0",
            "fe80::1%",
        ] {
            assert_eq!(ip_key_of(source, 128), expected, "{source}");
            assert_eq!(ip_key_of(source, 64), "ip:fe80::/64", "{source}");
        }
    }

    #[test]
    fn the_fallback_of_every_limit_by_keys_ipv6_by_its_prefix() {
        let source = "[2001:db8:1:2::99]:40000";
        let bys = [
            LimitBy::Consumer,
            LimitBy::Credential,
            LimitBy::Ip,
            LimitBy::Header("x-api-key".into()),
            LimitBy::Path("/payments".into()),
            LimitBy::Route,
            LimitBy::Service,
        ];
        for by in bys {
            let mut facts = Facts {
                source: Some(source.to_owned()),
                path: Some("/users".into()),
                ..Facts::default()
            };
            let got = by.key(None, &mut facts, ClientIpRule::default()).unwrap();
            assert_eq!(got.describe(), "ip:2001:db8:1:2::/64", "{by:?}");
        }
    }

    #[test]
    fn log_descriptions_are_one_safe_line() {
        let key = LimitKey::new(KeyKind::Consumer, "a\r\nb".into());
        assert_eq!(key.describe(), "consumer:a\\r\\nb");
        let long = LimitKey::new(KeyKind::Route, "r".repeat(300));
        assert!(long.describe().chars().count() < 140);
    }
}
