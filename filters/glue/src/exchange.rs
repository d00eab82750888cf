//! One request as the stages see it ([`Exchange`]): what they read from the host, read once
//! and kept for the stages after, and what they change in it, so that a later stage sees the
//! request as a later filter would. In a separate filter there is one stage and the exchange
//! is a cache; in the one-VM gateway it is why the header map, the route name and the
//! identity cost one host call each per request instead of one per filter.

use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;

use portcullis_core::header_map::{HeaderMap, MalformedMap};
use portcullis_core::identity::Identity;
use portcullis_core::jwt::Handoff;

use crate::host;

/// A request, from its headers to its end.
pub struct Exchange {
    context: u32,
    /// The header map, once read: as the host gave it, before any change below.
    map: Option<Result<HeaderMap, MalformedMap>>,
    /// Request headers set (`Some`) or removed (`None`) since, lower-case names, each the
    /// last change of that name: Envoy's `set_map_value` replaces every copy. Shared
    /// strings: the jwt stage's headers are its hand-off's, kept without a copy.
    edits: Vec<(Arc<str>, Option<Arc<str>>)>,
    route: Option<Option<String>>,
    identity: Option<Option<SharedIdentity>>,
    /// The gRPC call a stage paused the request for: its token.
    pub(crate) call: Option<u32>,
    /// The host clock (Unix milliseconds) as read in this VM entry.
    now_ms: Option<u64>,
}

impl Exchange {
    pub fn new(context: u32) -> Exchange {
        Exchange {
            context,
            map: None,
            edits: Vec::new(),
            route: None,
            identity: None,
            call: None,
            now_ms: None,
        }
    }

    /// The host clock in Unix milliseconds, read once per VM entry: the stages of one
    /// callback see the same time for one host call.
    pub fn now_millis(&mut self) -> u64 {
        *self.now_ms.get_or_insert_with(host::now_millis)
    }

    /// Forgets the clock: the request leaves this VM entry (parked, or kept for its
    /// response), and a later callback reads the time anew.
    pub(crate) fn forget_clock(&mut self) {
        self.now_ms = None;
    }

    /// The stream's context id.
    pub fn context(&self) -> u32 {
        self.context
    }

    /// The header map as the host gave it, read now if no stage has: a stage that needs
    /// most of the request (jwt) asks for it first, so that single values later come from
    /// memory. It does not show the changes made since: only for a stage that runs before
    /// any stage changes a request header (jwt: token-issuer never changes one), or that
    /// reads names alone; later stages read through [`Exchange::header`],
    /// [`Exchange::header_values`] or [`Exchange::headers`].
    pub fn read_headers(&mut self) -> Result<&HeaderMap, MalformedMap> {
        self.map
            .get_or_insert_with(host::request_header_map)
            .as_ref()
            .map_err(|e| *e)
    }

    /// Every request header as (name, value), as it is now: the map with the changes made
    /// since. Reads the map if no stage has.
    pub fn headers(&mut self) -> Result<Vec<(&str, &str)>, MalformedMap> {
        // The fields apart: the map borrowed while the edits are read.
        let map = self
            .map
            .get_or_insert_with(host::request_header_map)
            .as_ref()
            .map_err(|e| *e)?;
        let edits = &self.edits;
        let edited = |name: &str| edits.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
        Ok(map
            .iter()
            .filter(|(name, _)| !edited(name))
            .chain(
                edits
                    .iter()
                    .filter_map(|(n, v)| v.as_deref().map(|v| (&**n, v))),
            )
            .collect())
    }

    /// Every value of request header `name`, as it is now.
    pub fn header_values(&mut self, name: &str) -> Result<Vec<String>, MalformedMap> {
        if let Some(value) = self.edit(name) {
            return Ok(value.map(str::to_owned).into_iter().collect());
        }
        let map = self.read_headers()?;
        Ok(map
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.to_owned())
            .collect())
    }

    /// The first value of request header `name`, as it is now: from memory when the map was
    /// read, else one host call (cheaper than the whole map for one value).
    pub fn header(&mut self, name: &str) -> Option<String> {
        if let Some(value) = self.edit(name) {
            return value.map(str::to_owned);
        }
        match &self.map {
            Some(Ok(map)) => map.get(name).map(str::to_owned),
            _ => host::request_header(name),
        }
    }

    fn edit(&self, name: &str) -> Option<Option<&str>> {
        self.edits
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }

    /// Sets (or with `None` removes) a request header, on the host and here.
    pub fn set_header(&mut self, name: &str, value: Option<&str>) {
        self.change(
            name,
            value,
            || name.to_ascii_lowercase().into(),
            || value.map(Arc::from),
        );
    }

    /// [`Exchange::set_header`] with shared strings, kept here without a copy (of `name`
    /// too, when it is in lower case: the jwt stage's hand-off names are).
    pub fn set_shared_header(&mut self, name: &Arc<str>, value: &Arc<str>) {
        let lower = || match name.bytes().any(|b| b.is_ascii_uppercase()) {
            true => name.to_ascii_lowercase().into(),
            false => Arc::clone(name),
        };
        self.change(name, Some(value), lower, || Some(Arc::clone(value)));
    }

    /// Changes request header `name` to `value` on the host and remembers it: `lower` gives
    /// the name to keep, in lower case, when it is new here, `kept` the value to keep. A
    /// change an earlier stage already made (acl's `x-consumer-groups` after jwt's, the same
    /// value) costs no host call.
    fn change(
        &mut self,
        name: &str,
        value: Option<&str>,
        lower: impl FnOnce() -> Arc<str>,
        kept: impl FnOnce() -> Option<Arc<str>>,
    ) {
        let edit = self
            .edits
            .iter_mut()
            .find(|(n, _)| n.eq_ignore_ascii_case(name));
        if let Some((_, now)) = &edit {
            if now.as_deref() == value {
                return;
            }
        }
        host::set_request_header(name, value);
        match edit {
            Some(edit) => edit.1 = kept(),
            None => self.edits.push((lower(), kept())),
        }
    }

    /// The route name when `needed` (a policy can depend on it): asked of the host once per
    /// request, by whichever stage needs it first.
    pub fn route(&mut self, needed: bool) -> Option<&str> {
        if self.route.is_none() && needed {
            self.route = Some(host::route_name());
        }
        self.route.as_ref().and_then(|r| r.as_deref())
    }

    /// The identity a jwt stage or filter handed on: from memory when the jwt stage ran in
    /// this VM and accepted the request, else read from filter state (once). An identity
    /// that does not decode is an error, for the caller to fail closed.
    pub fn identity(&mut self) -> Result<Option<SharedIdentity>, String> {
        if self.identity.is_none() {
            let read = host::received_identity()?;
            self.identity = Some(read.map(|i| SharedIdentity::Read(Rc::new(i))));
        }
        Ok(self.identity.clone().flatten())
    }

    /// Hands on the identity the jwt stage accepted: to filter state (for later filters and
    /// the access log; a refusal traps, [`host::publish_identity`]) and to the later stages
    /// here.
    pub fn publish_identity(&mut self, handoff: &Arc<Handoff>) {
        host::publish_identity(&handoff.encoded);
        self.identity = Some(Some(SharedIdentity::Handed(Arc::clone(handoff))));
    }
}

/// An identity as the stages share it, never copied: read from filter state, or the jwt
/// stage's own hand-off.
#[derive(Clone)]
pub enum SharedIdentity {
    Read(Rc<Identity>),
    Handed(Arc<Handoff>),
}

impl Deref for SharedIdentity {
    type Target = Identity;

    fn deref(&self) -> &Identity {
        match self {
            SharedIdentity::Read(identity) => identity,
            SharedIdentity::Handed(handoff) => &handoff.identity,
        }
    }
}
