//! Counting one request against every policy that applies to it: all windows checked, then
//! all counted only if none is over, with CAS retry loops so that however many workers
//! count at once, no window ever admits more than its limit.
//!
//! Each policy keeps all its windows for one client in one slot, so one CAS write checks
//! and counts them together. When two policies apply (global and route), the request is
//! first checked against both without writing anything (a refused request counts nowhere,
//! as in Kong); then each slot is written in turn. If a slot changed since it was read, it
//! is read and checked again; if it now refuses, the counts already written for this
//! request are taken back. Between that write and its undo another request may see the
//! extra count and be refused: the limiter errs towards refusing, never towards admitting.

use super::counter::{WindowCount, WindowState};
use super::headers::{client_headers, logged_window, ClientHeaders, WindowReport};
use super::key::{KeyError, LimitKey, RequestFacts};
use super::policy::{Policy, RateLimitPolicySet, ResponseSettings};
use super::slot::Slot;
use super::table::{Located, Place, Table};
use super::UnixMillis;
use crate::shared::{SharedStore, StoreError, Written};

/// CAS writes one request may try while counting before it is a fault (contention so heavy
/// is not expected: two workers rarely write one slot at once). Taking a count back has a
/// budget of its own.
pub const MAX_ATTEMPTS: u32 = 32;

/// The compiled policies and the table their counters live in: everything a worker needs.
#[derive(Clone, Debug)]
pub struct Limiter {
    set: RateLimitPolicySet,
    table: Table,
}

/// What the glue does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision<'a> {
    /// No policy applies to the request's route.
    NotLimited,
    /// Counted and admitted; put `headers` on the response.
    Allow {
        headers: ClientHeaders,
        /// It counted in a shared overflow slot (the table is full around its key).
        overflowed: bool,
        /// The window with the fewest requests left, for the access log.
        window: Option<crate::decision::Window>,
    },
    /// Refused: answer `status` with the JSON `body` and `headers`, and log `reason`.
    Limit {
        status: u16,
        body: &'a str,
        headers: ClientHeaders,
        /// `consumer:c-1 by routes.payments minute: 20 of 20, retry in 42 s`.
        reason: String,
        overflowed: bool,
        /// The window with the fewest requests left, for the access log.
        window: Option<crate::decision::Window>,
    },
    /// Counting failed (shared data refused, or contention past [`MAX_ATTEMPTS`], or the
    /// request's headers unreadable). `pass` is `fault_tolerant`: let the request through,
    /// else answer 500.
    Fault { error: String, pass: bool },
    /// The request cannot be counted as sent (the counted header repeated with different
    /// values): answer `status` with the JSON `body`, log `reason`. Counted nowhere.
    Reject {
        status: u16,
        body: String,
        reason: String,
    },
}

/// Kong's answer when counting fails and the filter is not fault tolerant.
pub const FAULT_BODY: &str = crate::UNEXPECTED_ERROR_BODY;

/// Why counting failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    Store(StoreError),
    Contention,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Store(e) => write!(f, "{e}"),
            Fault::Contention => write!(
                f,
                "counters still contended after {MAX_ATTEMPTS} CAS attempts"
            ),
        }
    }
}

impl From<StoreError> for Fault {
    fn from(e: StoreError) -> Fault {
        Fault::Store(e)
    }
}

/// One policy applied to one request.
struct Subject<'a> {
    policy: &'a Policy,
    key: &'a LimitKey,
    owner: u64,
}

/// One read of one subject's slot, evaluated.
struct Attempt {
    located: Located,
    states: Vec<WindowState>,
}

impl Attempt {
    fn admits(&self) -> bool {
        self.states.iter().all(WindowState::admits)
    }

    /// The slot with this request counted in every window.
    fn counted(&self) -> Vec<u8> {
        self.slot(self.states.iter().map(WindowState::counted).collect())
    }

    /// The slot rolled to now, this request not counted.
    fn rolled(&self) -> Vec<u8> {
        self.slot(self.states.iter().map(|s| s.count).collect())
    }

    fn slot(&self, windows: Vec<WindowCount>) -> Vec<u8> {
        Slot {
            owner: self.located.owner,
            expires: self
                .states
                .iter()
                .map(WindowState::expires)
                .max()
                .unwrap_or(0),
            windows,
        }
        .encode()
    }

    fn stepped_back(&self) -> bool {
        self.states.iter().any(|s| s.stepped_back)
    }

    fn reports(&self, admitted: bool, now: UnixMillis) -> impl Iterator<Item = WindowReport> + '_ {
        self.states.iter().map(move |s| {
            let exceeded = !admitted && !s.admits();
            WindowReport {
                period: s.period,
                limit: s.limit,
                remaining: s.remaining(admitted),
                reset: if exceeded {
                    s.retry_secs(now)
                } else {
                    s.reset_secs(now)
                },
                exceeded,
            }
        })
    }
}

/// How counting ended.
enum Counted {
    Admitted(Vec<Attempt>),
    /// Refused by `subject`'s attempt (index into the attempts).
    Refused(Vec<Attempt>, usize),
}

impl Limiter {
    /// `namespace` tells this filter instance's table apart from others sharing the VM id:
    /// Envoy's plugin name.
    pub fn new(set: RateLimitPolicySet, namespace: &str) -> Limiter {
        let policies = u32::try_from(set.policies().len()).unwrap_or(u32::MAX);
        let table = Table::new(namespace, set.slots(), policies);
        Limiter { set, table }
    }

    pub fn policies(&self) -> &RateLimitPolicySet {
        &self.set
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    /// Counts the request on `route` at `now` and says what to do with it.
    pub fn decide(
        &self,
        route: Option<&str>,
        facts: &mut dyn RequestFacts,
        store: &dyn SharedStore,
        now: UnixMillis,
    ) -> Decision<'_> {
        match self.keys(route, facts) {
            Ok(keys) => self.decide_keyed(route, &keys, store, now),
            Err(refused) => refused,
        }
    }

    /// The key the request counts under for each policy on `route`, in
    /// [`RateLimitPolicySet::select`]'s order (none when no policy applies); or, when a
    /// key cannot be read, the decision that answers the request instead.
    pub fn keys(
        &self,
        route: Option<&str>,
        facts: &mut dyn RequestFacts,
    ) -> Result<Vec<LimitKey>, Decision<'_>> {
        let selection = self.set.select(route);
        let mut keys = Vec::with_capacity(selection.policies.len());
        for policy in &selection.policies {
            match policy.limit_by.key(route, facts, policy.client_ip) {
                Ok(key) => keys.push(key),
                Err(e @ KeyError::RepeatedHeader { .. }) => {
                    return Err(Decision::Reject {
                        status: KeyError::STATUS,
                        body: e.body(),
                        reason: format!(
                            "{} by {}: {}",
                            policy.limit_by.name(),
                            policy.name,
                            e.describe()
                        ),
                    })
                }
                Err(e @ KeyError::Host(_)) => {
                    return Err(Decision::Fault {
                        error: e.describe(),
                        pass: selection.response.fault_tolerant,
                    })
                }
            }
        }
        Ok(keys)
    }

    /// [`Limiter::decide`] with the keys already read (by [`Limiter::keys`]): the
    /// rate limit service's fallback counts locally what it asked the service about.
    pub fn decide_keyed(
        &self,
        route: Option<&str>,
        keys: &[LimitKey],
        store: &dyn SharedStore,
        now: UnixMillis,
    ) -> Decision<'_> {
        let selection = self.set.select(route);
        if selection.policies.is_empty() {
            return Decision::NotLimited;
        }
        if selection.policies.len() != keys.len() {
            // Keys read for another route: a bug, never admitted silently.
            return Decision::Fault {
                error: format!(
                    "{} keys for {} policies",
                    keys.len(),
                    selection.policies.len()
                ),
                pass: selection.response.fault_tolerant,
            };
        }
        let subjects: Vec<Subject<'_>> = selection
            .policies
            .iter()
            .zip(keys)
            .map(|(policy, key)| Subject {
                policy,
                key,
                owner: self.table.owner(policy, key),
            })
            .collect();
        let response: &ResponseSettings = selection.response;
        match self.count(store, &subjects, now) {
            Ok(Counted::Admitted(attempts)) => {
                let (headers, window) = self.headers(response, &attempts, true, now);
                Decision::Allow {
                    headers,
                    overflowed: overflowed(&attempts),
                    window,
                }
            }
            Ok(Counted::Refused(attempts, by)) => {
                let (headers, window) = self.headers(response, &attempts, false, now);
                Decision::Limit {
                    status: response.error_code,
                    body: &response.error_body,
                    headers,
                    reason: reason(&subjects, &attempts, by, now),
                    overflowed: overflowed(&attempts),
                    window,
                }
            }
            Err(failed) => {
                if !response.fault_tolerant {
                    // The request will not be served: take back what it counted.
                    self.undo(store, &subjects, &failed.attempts, &failed.written, now);
                }
                Decision::Fault {
                    error: failed.fault.to_string(),
                    pass: response.fault_tolerant,
                }
            }
        }
    }

    fn headers(
        &self,
        response: &ResponseSettings,
        attempts: &[Attempt],
        admitted: bool,
        now: UnixMillis,
    ) -> (ClientHeaders, Option<crate::decision::Window>) {
        let reports: Vec<WindowReport> = attempts
            .iter()
            .flat_map(|a| a.reports(admitted, now))
            .collect();
        let window = logged_window(&reports);
        if response.hide_client_headers {
            return (Vec::new(), window);
        }
        (client_headers(&reports), window)
    }

    /// Reads and evaluates one subject's slot.
    fn attempt(
        &self,
        store: &dyn SharedStore,
        subject: &Subject<'_>,
        now: UnixMillis,
    ) -> Result<Attempt, StoreError> {
        let located = self
            .table
            .locate(store, subject.policy, subject.owner, now.secs())?;
        let limits = &subject.policy.limits;
        let stored = located
            .stored
            .as_ref()
            .map(|s| s.windows.as_slice())
            .filter(|w| w.len() == limits.len());
        let states = limits
            .iter()
            .enumerate()
            .map(|(i, (period, limit))| {
                let count = stored.and_then(|w| w.get(i)).copied();
                WindowState::at(*period, *limit, subject.policy.algorithm, count, now)
            })
            .collect();
        Ok(Attempt { located, states })
    }

    /// Checks every subject, then counts in each.
    fn count(
        &self,
        store: &dyn SharedStore,
        subjects: &[Subject<'_>],
        now: UnixMillis,
    ) -> Result<Counted, Failed> {
        let mut attempts = Vec::with_capacity(subjects.len());
        for subject in subjects {
            match self.attempt(store, subject, now) {
                Ok(attempt) => attempts.push(attempt),
                Err(e) => return Err(Failed::new(e.into(), attempts, Vec::new())),
            }
        }
        if let Some(by) = attempts.iter().position(|a| !a.admits()) {
            persist_steps(store, &attempts);
            return Ok(Counted::Refused(attempts, by));
        }
        let mut budget = MAX_ATTEMPTS;
        let mut written = Vec::with_capacity(subjects.len());
        for (i, subject) in subjects.iter().enumerate() {
            while let Some(attempt) = attempts.get(i) {
                let outcome = store.cas_set(
                    &attempt.located.key,
                    &attempt.counted(),
                    attempt.located.cas,
                );
                match outcome {
                    Ok(Written::Ok) => {
                        written.push(i);
                        break;
                    }
                    Err(e) => return Err(Failed::new(e.into(), attempts, written)),
                    Ok(Written::CasMismatch) => {}
                }
                budget = budget.saturating_sub(1);
                if budget == 0 {
                    return Err(Failed::new(Fault::Contention, attempts, written));
                }
                let fresh = match self.attempt(store, subject, now) {
                    Ok(fresh) => fresh,
                    Err(e) => return Err(Failed::new(e.into(), attempts, written)),
                };
                let admits = fresh.admits();
                if let Some(slot) = attempts.get_mut(i) {
                    *slot = fresh;
                }
                if !admits {
                    self.undo(store, subjects, &attempts, &written, now);
                    persist_steps(store, &attempts);
                    return Ok(Counted::Refused(attempts, i));
                }
            }
        }
        Ok(Counted::Admitted(attempts))
    }

    /// Takes back one count from each written subject's slot, if the slot is still theirs
    /// and the window still the one counted in (or its count has moved to `previous`). Best
    /// effort: a failure leaves an extra count, which only ever refuses, never admits.
    fn undo(
        &self,
        store: &dyn SharedStore,
        subjects: &[Subject<'_>],
        attempts: &[Attempt],
        written: &[usize],
        now: UnixMillis,
    ) {
        for i in written {
            let (Some(subject), Some(counted)) = (subjects.get(*i), attempts.get(*i)) else {
                continue;
            };
            for _ in 0..MAX_ATTEMPTS {
                let Ok(found) = self
                    .table
                    .locate(store, subject.policy, subject.owner, now.secs())
                else {
                    return;
                };
                let (Place::Owned | Place::Overflow, Some(mut slot)) = (found.place, found.stored)
                else {
                    break;
                };
                for (w, state) in slot.windows.iter_mut().zip(&counted.states) {
                    if w.start == state.count.start {
                        w.count = w.count.saturating_sub(1);
                    } else if w.start == state.period.next(state.window).start {
                        w.previous = w.previous.saturating_sub(1);
                    }
                }
                match store.cas_set(&found.key, &slot.encode(), found.cas) {
                    Ok(Written::CasMismatch) => continue,
                    Ok(Written::Ok) | Err(_) => break,
                }
            }
        }
    }
}

/// Counting failed: why, and what had been read and written by then (to undo).
struct Failed {
    fault: Fault,
    attempts: Vec<Attempt>,
    written: Vec<usize>,
}

impl Failed {
    fn new(fault: Fault, attempts: Vec<Attempt>, written: Vec<usize>) -> Failed {
        Failed {
            fault,
            attempts,
            written,
        }
    }
}

/// After a clock step back, a refused request still writes the carried counts (best effort,
/// without counting itself): else every later window would see the slot's window ahead of
/// the clock again and carry the old counts along until the clock caught up.
fn persist_steps(store: &dyn SharedStore, attempts: &[Attempt]) {
    for attempt in attempts.iter().filter(|a| a.stepped_back()) {
        let _ = store.cas_set(&attempt.located.key, &attempt.rolled(), attempt.located.cas);
    }
}

fn overflowed(attempts: &[Attempt]) -> bool {
    attempts.iter().any(|a| a.located.place == Place::Overflow)
}

/// The log line of a refusal: the key, the policy and the window that binds longest.
fn reason(subjects: &[Subject<'_>], attempts: &[Attempt], by: usize, now: UnixMillis) -> String {
    let subject = subjects.get(by);
    let binding = attempts.get(by).and_then(|a| {
        a.states
            .iter()
            .filter(|s| !s.admits())
            .max_by_key(|s| s.retry_secs(now))
    });
    match (subject, binding) {
        (Some(subject), Some(state)) => format!(
            "{} by {} {}: {} of {} used, retry in {} s",
            subject.key.describe(),
            subject.policy.name,
            state.period.name(),
            state.used,
            state.limit,
            state.retry_secs(now)
        ),
        _ => "over the limit".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::rate_limit::key::tests::Facts;
    use crate::shared::MemoryStore;

    /// 2026-01-01T00:00:00Z.
    const T0: u64 = 1_767_225_600;

    fn limiter(config: serde_json::Value) -> Limiter {
        let set = RateLimitPolicySet::from_json(config.to_string().as_bytes()).unwrap();
        Limiter::new(set, "rate-limiting")
    }

    fn ready(limiter: &Limiter) -> MemoryStore {
        let store = MemoryStore::new();
        limiter.table().initialise(&store).unwrap();
        store
    }

    fn at(secs: u64) -> UnixMillis {
        UnixMillis(secs * 1_000)
    }

    fn from(ip: &str) -> Facts {
        Facts::from_ip(ip)
    }

    fn status(d: &Decision<'_>) -> u16 {
        match d {
            Decision::NotLimited | Decision::Allow { .. } => 200,
            Decision::Limit { status, .. } | Decision::Reject { status, .. } => *status,
            Decision::Fault { pass: true, .. } => 200,
            Decision::Fault { pass: false, .. } => 500,
        }
    }

    fn header<'a>(d: &'a Decision<'_>, name: &str) -> Option<&'a str> {
        let headers = match d {
            Decision::Allow { headers, .. } | Decision::Limit { headers, .. } => headers,
            _ => return None,
        };
        headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_repeated_counted_header_is_refused_and_counts_nowhere() {
        let limiter = limiter(json!({
            "minute": 2, "limit_by": "header", "header_name": "x-api-key",
            "routes": {"pay": {"minute": 5, "limit_by": "ip"}}
        }));
        let store = ready(&limiter);
        let twice = || {
            from("203.0.113.7")
                .header("x-api-key", "random")
                .header("x-api-key", "k-real")
        };
        for _ in 0..3 {
            let d = limiter.decide(Some("pay"), &mut twice(), &store, at(T0 + 10));
            let Decision::Reject {
                status,
                body,
                reason,
            } = &d
            else {
                panic!("{d:?}")
            };
            assert_eq!(*status, 400);
            assert_eq!(
                body,
                r#"{"message":"The x-api-key header must be sent once"}"#
            );
            assert_eq!(
                reason,
                "header by global: x-api-key sent 2 times with different values"
            );
        }
        // Nothing was counted, under either policy: the real key still has its 2.
        let once = || from("203.0.113.7").header("x-api-key", "k-real");
        let statuses: Vec<u16> = (0..3)
            .map(|_| status(&limiter.decide(Some("pay"), &mut once(), &store, at(T0 + 11))))
            .collect();
        assert_eq!(statuses, [200, 200, 429]);
    }

    #[test]
    fn unreadable_headers_are_a_fault_fault_tolerant_decides() {
        for tolerant in [true, false] {
            let limiter = limiter(json!({
                "minute": 2, "limit_by": "header", "header_name": "x-api-key",
                "fault_tolerant": tolerant
            }));
            let store = ready(&limiter);
            let mut facts = from("203.0.113.7").header("x-api-key", "k");
            facts.broken_header_map = true;
            let d = limiter.decide(None, &mut facts, &store, at(T0 + 10));
            let Decision::Fault { error, pass } = &d else {
                panic!("{d:?}")
            };
            assert_eq!(*pass, tolerant);
            assert!(error.contains("request headers unreadable"), "{error}");
        }
    }

    #[test]
    fn the_access_log_gets_the_window_with_fewest_left_even_with_hidden_headers() {
        use crate::decision::Window;
        for hide in [false, true] {
            let limiter = limiter(json!({
                "minute": 3, "hour": 100, "limit_by": "ip", "hide_client_headers": hide
            }));
            let store = ready(&limiter);
            let window = |d: &Decision<'_>| match d {
                Decision::Allow { window, .. } | Decision::Limit { window, .. } => *window,
                _ => panic!("{d:?}"),
            };
            let minute = |remaining| {
                Some(Window {
                    period: "minute",
                    limit: 3,
                    remaining,
                })
            };
            let mut seen = Vec::new();
            for i in 0..4 {
                let d = limiter.decide(None, &mut from("203.0.113.7"), &store, at(T0 + 10 + i));
                seen.push(window(&d));
            }
            assert_eq!(seen, [minute(2), minute(1), minute(0), minute(0)], "{hide}");
        }
    }

    #[test]
    fn admits_exactly_the_limit_then_refuses_with_kongs_answer() {
        let limiter = limiter(json!({"minute": 3, "limit_by": "ip"}));
        let store = ready(&limiter);
        let mut statuses = Vec::new();
        for i in 0..5 {
            let d = limiter.decide(None, &mut from("203.0.113.7"), &store, at(T0 + 10 + i));
            statuses.push(status(&d));
            if i == 0 {
                assert_eq!(header(&d, "x-ratelimit-limit-minute"), Some("3"));
                assert_eq!(header(&d, "x-ratelimit-remaining-minute"), Some("2"));
                assert_eq!(header(&d, "ratelimit-reset"), Some("50"));
            }
            if i == 4 {
                let Decision::Limit { body, reason, .. } = &d else {
                    panic!("{d:?}")
                };
                assert_eq!(*body, r#"{"message":"API rate limit exceeded"}"#);
                assert_eq!(
                    reason,
                    "ip:203.0.113.7 by global minute: 3 of 3 used, retry in 46 s"
                );
                assert_eq!(header(&d, "retry-after"), Some("46"));
                assert_eq!(header(&d, "x-ratelimit-remaining-minute"), Some("0"));
            }
        }
        assert_eq!(statuses, [200, 200, 200, 429, 429]);
        // Another client has its own counter; the next minute starts over.
        let other = limiter.decide(None, &mut from("203.0.113.8"), &store, at(T0 + 20));
        assert_eq!(status(&other), 200);
        let next = limiter.decide(None, &mut from("203.0.113.7"), &store, at(T0 + 60));
        assert_eq!(status(&next), 200);
    }

    #[test]
    fn refused_requests_do_not_count() {
        let limiter = limiter(json!({"second": 2, "minute": 3, "limit_by": "ip"}));
        let store = ready(&limiter);
        let send = |secs| status(&limiter.decide(None, &mut from("10.0.0.1"), &store, at(secs)));
        // Two in the first second, the third refused by the second window: only the minute's
        // third request is left, in the next second.
        assert_eq!(
            [send(T0), send(T0), send(T0), send(T0 + 1), send(T0 + 2)],
            [200, 200, 429, 200, 429]
        );
    }

    #[test]
    fn global_and_route_policies_stack() {
        let limiter = limiter(json!({
            "minute": 5, "limit_by": "ip",
            "routes": {"payments": {"minute": 2}}
        }));
        let store = ready(&limiter);
        let send = |route: &str| {
            let d = limiter.decide(Some(route), &mut from("10.0.0.1"), &store, at(T0));
            (
                status(&d),
                header(&d, "x-ratelimit-limit-minute").map(str::to_owned),
            )
        };
        assert_eq!(send("payments"), (200, Some("2".into())));
        assert_eq!(send("payments"), (200, Some("2".into())));
        assert_eq!(send("payments"), (429, Some("2".into())));
        // The refusal did not count globally: three more on other routes, then the global
        // limit refuses everywhere.
        assert_eq!(send("users"), (200, Some("5".into())));
        assert_eq!(send("users"), (200, Some("5".into())));
        assert_eq!(send("orders"), (200, Some("5".into())));
        assert_eq!(send("users").0, 429);
        assert_eq!(send("payments").0, 429);
    }

    #[test]
    fn unlisted_routes_without_a_global_policy_are_not_limited() {
        let limiter = limiter(json!({"routes": {"payments": {"second": 1}}}));
        let store = ready(&limiter);
        let d = limiter.decide(Some("users"), &mut from("10.0.0.1"), &store, at(T0));
        assert_eq!(d, Decision::NotLimited);
    }

    #[test]
    fn hide_client_headers_leaves_every_header_out() {
        let limiter = limiter(json!({"second": 1, "limit_by": "ip", "hide_client_headers": true}));
        let store = ready(&limiter);
        for _ in 0..2 {
            match limiter.decide(None, &mut from("10.0.0.1"), &store, at(T0)) {
                Decision::Allow { headers, .. } | Decision::Limit { headers, .. } => {
                    assert!(headers.is_empty(), "{headers:?}")
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn a_write_by_another_worker_between_read_and_cas_is_counted_not_overwritten() {
        let limiter = limiter(json!({"minute": 5, "limit_by": "ip"}));
        let store = ready(&limiter);
        // Another worker admits a request every time this one reads the slot, three times.
        let foreign = Arc::new(AtomicU64::new(0));
        let seen = foreign.clone();
        let prefix = limiter.table().slot_key(0);
        let prefix = prefix.trim_end_matches('0').to_owned();
        store.on_get(move |key, w| {
            if !key.starts_with(&prefix) || seen.load(Ordering::SeqCst) >= 3 {
                return;
            }
            let Some(mut slot) = w.get(key).and_then(Slot::decode) else {
                return;
            };
            if let Some(window) = slot.windows.first_mut() {
                window.count += 1;
                seen.fetch_add(1, Ordering::SeqCst);
                w.set(key, &slot.encode());
            }
        });
        let mut admitted = 0;
        for _ in 0..10 {
            if status(&limiter.decide(None, &mut from("10.0.0.1"), &store, at(T0))) == 200 {
                admitted += 1;
            }
        }
        store.clear_hook();
        assert_eq!(foreign.load(Ordering::SeqCst), 3);
        assert_eq!(admitted, 2, "5 in all: 3 by the other worker, 2 here");
    }

    #[test]
    fn a_route_policy_refusing_after_the_global_counted_takes_the_global_count_back() {
        let limiter = limiter(json!({
            "minute": 10, "limit_by": "ip",
            "routes": {"payments": {"minute": 1}}
        }));
        let store = ready(&limiter);
        // Fill the route's counter behind this worker's back, right after it read it.
        let policies = limiter.policies().policies();
        let route = policies[1];
        let owner = limiter.table().owner(
            route,
            &LimitKey::new(crate::rate_limit::key::KeyKind::Ip, "10.0.0.1".into()),
        );
        let route_key = limiter.table().slot_key((owner % 65_536) as u32);
        let armed = Arc::new(AtomicU64::new(1));
        let fire = armed.clone();
        let slot_owner = owner;
        store.on_get(move |key, w| {
            if key == route_key && fire.swap(0, Ordering::SeqCst) == 1 {
                let slot = Slot {
                    owner: slot_owner,
                    expires: T0 + 60,
                    windows: vec![crate::rate_limit::counter::WindowCount {
                        start: T0,
                        count: 1,
                        previous: 0,
                    }],
                };
                w.set(key, &slot.encode());
            }
        });
        let d = limiter.decide(Some("payments"), &mut from("10.0.0.1"), &store, at(T0));
        assert_eq!(status(&d), 429);
        store.clear_hook();
        // The global counter is back where it was: ten more on other routes pass.
        let mut passed = 0;
        for _ in 0..11 {
            if status(&limiter.decide(Some("users"), &mut from("10.0.0.1"), &store, at(T0))) == 200
            {
                passed += 1;
            }
        }
        assert_eq!(passed, 10);
    }

    #[test]
    fn contention_past_the_budget_is_a_fault_fault_tolerant_decides() {
        for (tolerant, expected) in [(true, 200), (false, 500)] {
            let limiter =
                limiter(json!({"minute": 5, "limit_by": "ip", "fault_tolerant": tolerant}));
            let store = ready(&limiter);
            // Every read is followed by another worker's write: no CAS ever succeeds.
            store.on_get(|key, w| {
                if let Some(value) = w.get(key).map(<[u8]>::to_vec) {
                    w.set(key, &value);
                }
            });
            let d = limiter.decide(None, &mut from("10.0.0.1"), &store, at(T0));
            assert_eq!(status(&d), expected, "{d:?}");
            let Decision::Fault { error, .. } = d else {
                panic!()
            };
            assert!(error.contains("32 CAS attempts"), "{error}");
        }
    }

    #[test]
    fn shared_data_refused_is_a_fault() {
        let limiter = limiter(json!({"minute": 5, "limit_by": "ip", "fault_tolerant": false}));
        let store = ready(&limiter);
        store.fail_next(1, 0);
        let d = limiter.decide(None, &mut from("10.0.0.1"), &store, at(T0));
        assert_eq!(status(&d), 500);
        store.fail_next(0, 1);
        let d = limiter.decide(None, &mut from("10.0.0.1"), &store, at(T0));
        assert_eq!(status(&d), 500);
        // Nothing was counted by the failed requests.
        for _ in 0..5 {
            assert_eq!(
                status(&limiter.decide(None, &mut from("10.0.0.1"), &store, at(T0))),
                200
            );
        }
    }

    #[test]
    fn threads_hammering_one_key_admit_exactly_the_limit() {
        let limiter = Arc::new(limiter(json!({
            "minute": 250, "hour": 1_000, "limit_by": "ip",
            "routes": {"payments": {"minute": 100}}
        })));
        let store = Arc::new(ready(&limiter));
        let admitted = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (limiter, store, admitted) = (limiter.clone(), store.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for i in 0..100u64 {
                        let on_payments = (t + i) % 2 == 0;
                        let route = if on_payments { "payments" } else { "users" };
                        let mut facts = Facts::from_ip("10.9.9.9");
                        match limiter.decide(Some(route), &mut facts, &*store, at(T0 + 5)) {
                            Decision::Allow { .. } => {
                                admitted[usize::from(on_payments)].fetch_add(1, Ordering::SeqCst);
                            }
                            Decision::Limit { .. } => {}
                            other => panic!("{other:?}"),
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        // 800 requests, half to payments: payments admits at most 100 of its 400, and
        // together they fill the global 250 exactly.
        let [users, payments] = [0, 1].map(|i| admitted[i].load(Ordering::SeqCst));
        assert!(payments <= 100, "{payments} on payments");
        assert_eq!(users + payments, 250);
    }

    #[test]
    fn a_million_distinct_ips_stay_within_the_table_bound() {
        let limiter = limiter(json!({"minute": 10, "limit_by": "ip", "slots": 4_096}));
        let store = ready(&limiter);
        let bound = limiter.table().bound(1);
        let (keys, bytes) = (store.len(), store.bytes());
        assert_eq!(keys, bound.keys);
        let mut overflowed = 0u64;
        for n in 0..1_000_000u64 {
            let ip = format!("10.{}.{}.{}", n >> 16, (n >> 8) & 255, n & 255);
            // Spread over ten minutes, so windows expire and slots are reclaimed.
            let now = UnixMillis(T0 * 1_000 + n * 6 / 10);
            if let Decision::Allow {
                overflowed: true, ..
            }
            | Decision::Limit {
                overflowed: true, ..
            } = limiter.decide(None, &mut Facts::from_ip(&ip), &store, now)
            {
                overflowed += 1;
            }
        }
        assert_eq!(store.len(), keys, "no key was ever added");
        assert!(
            store.bytes() <= bound.bytes,
            "{} > {}",
            store.bytes(),
            bound.bytes
        );
        assert!(bytes <= store.bytes());
        // 100k clients a minute in 4096 slots: most overflow, and are limited together.
        assert!(overflowed > 0);
    }

    #[test]
    fn sliding_windows_count_across_the_edge() {
        let limiter = limiter(json!({"minute": 10, "limit_by": "ip", "algorithm": "sliding"}));
        let store = ready(&limiter);
        let send =
            |ms: u64| status(&limiter.decide(None, &mut from("10.0.0.1"), &store, UnixMillis(ms)));
        let late = (T0 + 59) * 1_000;
        let admitted = (0..10).filter(|_| send(late) == 200).count();
        assert_eq!(admitted, 10);
        // Right after the edge the previous minute still weighs almost fully.
        assert_eq!(send((T0 + 60) * 1_000 + 500), 429);
        // Half way through, half of it: five more fit.
        let half = (T0 + 90) * 1_000;
        assert_eq!((0..10).filter(|_| send(half) == 200).count(), 5);
    }

    #[test]
    fn a_clock_step_back_does_not_reset_counts() {
        let limiter = limiter(json!({"minute": 2, "limit_by": "ip"}));
        let store = ready(&limiter);
        let send = |secs| status(&limiter.decide(None, &mut from("10.0.0.1"), &store, at(secs)));
        assert_eq!(
            [send(T0 + 3_600), send(T0 + 3_600), send(T0 + 3_600)],
            [200, 200, 429]
        );
        // NTP steps the clock back an hour: the counts carry over.
        assert_eq!(send(T0 + 10), 429);
        // A minute later (by the stepped clock) the window turns as usual.
        assert_eq!(send(T0 + 60), 200);
    }
}
