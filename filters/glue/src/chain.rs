//! The stages and the one runner that packages them: each separate filter is this runner
//! over its one stage, and the one-VM gateway is the same runner over up to four, in the
//! fixed order token-issuer, jwt, acl, rate-limiting. So a stage is written once and both
//! packagings run it the same way; only what the stages share changes ([`Exchange`]: one
//! header map, one route name, the identity in memory).
//!
//! A request meets the stages in order until one answers it or pauses it. A paused request
//! is parked, with everything it carries, in its worker, keyed by its stream's context id,
//! and the root context (a JWKS fetch or a consumer lookup landing, a tick) or a gRPC answer
//! takes it up again at the stage that paused it and goes on from there. The response
//! passes the stages in reverse order, as Envoy runs a chain's encoders.
//!
//! The runner is generic over the stage types, so a separate filter's module holds its own
//! stage's code and no other ([`Absent`] for the stages it does not have).

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

use crate::exchange::Exchange;

/// Where a stage leaves a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// On to the next stage (or upstream, after the last).
    Next,
    /// The stage answered (or will answer) the request itself: no later stage sees it.
    Answered,
    /// The stage paused the request; it takes it up again from a root callback or a gRPC
    /// answer (a call it dispatched is named in [`Exchange`]).
    Wait,
}

/// Takes up a paused request: `resume(context, decide)` runs `decide` on that request's
/// exchange (the stream is the effective context) and goes on as it says. A request that is
/// gone (the client left) is skipped.
pub type Resume<'a> = dyn FnMut(u32, &mut dyn FnMut(&mut Exchange) -> Step) + 'a;

/// One stage: a filter's glue, without the proxy-wasm contexts around it.
pub trait Stage: 'static {
    /// What the stage keeps per request.
    type Request: Default;

    /// Whether the stage may pause a request for a gRPC call (a module without such a
    /// stage carries no code for the answers).
    const CALLS_OUT: bool = false;

    /// Whether the stage has anything to do with responses.
    const RESPONDS: bool = false;

    fn request(&self, x: &mut Exchange, r: &mut Self::Request) -> Step;

    fn response_headers(&self, _r: &mut Self::Request, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn response_body(&self, _r: &mut Self::Request, _size: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }

    fn response_trailers(&self, _r: &mut Self::Request) -> Action {
        Action::Continue
    }

    /// The answer to the gRPC call this stage paused the request for.
    fn grpc_answer(
        &self,
        _x: &mut Exchange,
        _r: &mut Self::Request,
        _status: u32,
        _size: usize,
    ) -> Step {
        Step::Next
    }

    /// The stream of `context` ended.
    fn done(&self, _context: u32) {}

    /// The root context's tick.
    fn tick(&self, _root: u32, _resume: &mut Resume<'_>) {}

    /// The answer to an HTTP call the root context dispatched; `false`: not this stage's.
    fn http_call_answer(
        &self,
        _root: u32,
        _token: u32,
        _body_size: usize,
        _resume: &mut Resume<'_>,
    ) -> bool {
        false
    }
}

/// The stage a packaging does not have: never configured, never run.
pub enum Absent {}

impl Stage for Absent {
    type Request = ();

    fn request(&self, _x: &mut Exchange, _r: &mut ()) -> Step {
        match *self {}
    }
}

/// The stages of one packaging, in request order; `None`: not configured.
pub struct Stages<T, J, A, R> {
    pub token_issuer: Option<T>,
    pub jwt: Option<J>,
    pub acl: Option<A>,
    pub rate_limiting: Option<R>,
}

impl<T, J, A, R> Default for Stages<T, J, A, R> {
    fn default() -> Self {
        Stages {
            token_issuer: None,
            jwt: None,
            acl: None,
            rate_limiting: None,
        }
    }
}

/// A request and every stage's share of it.
struct Request<T: Stage, J: Stage, A: Stage, R: Stage> {
    x: Exchange,
    /// The stage that paused or answered it, when one did.
    at: usize,
    t: T::Request,
    j: J::Request,
    a: A::Request,
    r: R::Request,
}

/// What one worker's contexts share.
struct Worker<T: Stage, J: Stage, A: Stage, R: Stage> {
    stages: Stages<T, J, A, R>,
    /// Requests paused, or taken up again from the root context: by context id. A few at
    /// a time at most (a vector: no hashing code in every module).
    parked: Parked<Request<T, J, A, R>>,
    /// gRPC calls out: token → the context whose request waits for the answer.
    calls: Parked<u32>,
}

/// Values by a u32 key, few at a time.
struct Parked<V>(RefCell<Vec<(u32, V)>>);

impl<V> Parked<V> {
    fn new() -> Self {
        Parked(RefCell::new(Vec::new()))
    }

    fn insert(&self, key: u32, value: V) {
        let mut all = self.0.borrow_mut();
        all.retain(|(k, _)| *k != key);
        all.push((key, value));
    }

    fn remove(&self, key: u32) -> Option<V> {
        let mut all = self.0.borrow_mut();
        let at = all.iter().position(|(k, _)| *k == key)?;
        Some(all.swap_remove(at).1)
    }

    fn retain(&self, keep: impl Fn(u32, &V) -> bool) {
        self.0.borrow_mut().retain(|(k, v)| keep(*k, v));
    }
}

const JWT: usize = 1;

impl<T: Stage, J: Stage, A: Stage, R: Stage> Worker<T, J, A, R> {
    const CALLS_OUT: bool = T::CALLS_OUT || J::CALLS_OUT || A::CALLS_OUT || R::CALLS_OUT;
    const RESPONDS: bool = T::RESPONDS || J::RESPONDS || A::RESPONDS || R::RESPONDS;

    /// Runs the stages from `from` on; where it stops, the request remembers.
    fn run(&self, from: usize, q: &mut Request<T, J, A, R>) -> Step {
        let s = &self.stages;
        for at in from..4 {
            let step = match at {
                0 => s
                    .token_issuer
                    .as_ref()
                    .map(|t| t.request(&mut q.x, &mut q.t)),
                1 => s.jwt.as_ref().map(|j| j.request(&mut q.x, &mut q.j)),
                2 => s.acl.as_ref().map(|a| a.request(&mut q.x, &mut q.a)),
                _ => s
                    .rate_limiting
                    .as_ref()
                    .map(|r| r.request(&mut q.x, &mut q.r)),
            };
            match step {
                None | Some(Step::Next) => {}
                Some(stop) => {
                    q.at = at;
                    return stop;
                }
            }
        }
        Step::Next
    }

    /// Keeps a request that is not in its HTTP context: it waits (its gRPC call, if any,
    /// noted), or was taken up from the root context and is kept for its response.
    fn park(&self, context: u32, mut q: Request<T, J, A, R>) {
        q.x.forget_clock();
        if let Some(token) = q.x.call.take().filter(|_| Self::CALLS_OUT) {
            self.calls.insert(token, context);
        }
        self.parked.insert(context, q);
    }

    /// Takes up the request of `context` at stage `at`, which `decide` decides again.
    fn resume(&self, at: usize, context: u32, decide: &mut dyn FnMut(&mut Exchange) -> Step) {
        let Some(mut q) = self.parked.remove(context) else {
            return;
        };
        let step = decide(&mut q.x);
        self.go_on(at, context, q, step);
    }

    /// After stage `at` decided a paused request again: the stages after it run if it went
    /// on, the stream resumes if they all did, and the request is parked again (waiting, or
    /// kept for its response).
    fn go_on(&self, at: usize, context: u32, mut q: Request<T, J, A, R>, mut step: Step) {
        if step == Step::Next {
            step = self.run(at + 1, &mut q);
        }
        if step == Step::Next {
            let _ = hostcalls::resume_http_request();
        }
        self.park(context, q);
    }

    /// A gRPC answer, wherever the SDK delivered it: to the stream that dispatched the call,
    /// or to the root context (`root`) when the call was dispatched from there.
    fn grpc_answer(&self, token: u32, status: u32, size: usize, root: Option<u32>) {
        if !Self::CALLS_OUT {
            return;
        }
        let Some(context) = self.calls.remove(token) else {
            return;
        };
        let Some(mut q) = self.parked.remove(context) else {
            return;
        };
        if root.is_some() && hostcalls::set_effective_context(context).is_err() {
            return;
        }
        let s = &self.stages;
        let at = q.at;
        let step = match at {
            0 => s
                .token_issuer
                .as_ref()
                .map(|t| t.grpc_answer(&mut q.x, &mut q.t, status, size)),
            1 => s
                .jwt
                .as_ref()
                .map(|j| j.grpc_answer(&mut q.x, &mut q.j, status, size)),
            2 => s
                .acl
                .as_ref()
                .map(|a| a.grpc_answer(&mut q.x, &mut q.a, status, size)),
            _ => s
                .rate_limiting
                .as_ref()
                .map(|r| r.grpc_answer(&mut q.x, &mut q.r, status, size)),
        }
        .unwrap_or(Step::Next);
        self.go_on(at, context, q, step);
        if let Some(root) = root {
            let _ = hostcalls::set_effective_context(root);
        }
    }

    fn tick(&self, root: u32) {
        if let Some(jwt) = &self.stages.jwt {
            jwt.tick(root, &mut |context, decide| {
                self.resume(JWT, context, decide)
            });
        }
    }

    fn http_call_answer(&self, root: u32, token: u32, body_size: usize) {
        if let Some(jwt) = &self.stages.jwt {
            jwt.http_call_answer(root, token, body_size, &mut |context, decide| {
                self.resume(JWT, context, decide)
            });
        }
    }
}

/// How a packaging starts: its name (log lines, the panic hook), how it reads its
/// configuration (`None`: refused, the reason logged), and what a request gets when there
/// is no configuration.
pub struct Packaging<T, J, A, R> {
    pub name: &'static str,
    pub configure: Configure<T, J, A, R>,
    pub unconfigured: fn(),
}

/// How a packaging reads its configuration.
pub type Configure<T, J, A, R> = fn(Option<Vec<u8>>) -> Option<Stages<T, J, A, R>>;

thread_local! {
    /// The packaging registered: the root context factory must be a plain function.
    static PACKAGING: RefCell<Option<Box<dyn std::any::Any>>> = const { RefCell::new(None) };
}

/// Registers the root context of `packaging`: the `proxy_wasm::main!` of every module.
pub fn register<T: Stage, J: Stage, A: Stage, R: Stage>(packaging: Packaging<T, J, A, R>) {
    crate::start(packaging.name);
    let fns: (Configure<T, J, A, R>, fn()) = (packaging.configure, packaging.unconfigured);
    PACKAGING.with(|p| *p.borrow_mut() = Some(Box::new(fns)));
    proxy_wasm::set_root_context(|id| {
        let fns = PACKAGING.with(|p| {
            p.borrow()
                .as_ref()
                .and_then(|b| b.downcast_ref::<(Configure<T, J, A, R>, fn())>().copied())
        });
        // Always there: registered just above, in this thread, before any root exists.
        let (configure, unconfigured) = fns.unwrap_or((|_| None, unconfigured));
        Box::new(Root {
            id,
            configure,
            unconfigured,
            worker: None,
        })
    });
}

struct Root<T: Stage, J: Stage, A: Stage, R: Stage> {
    id: u32,
    configure: Configure<T, J, A, R>,
    unconfigured: fn(),
    worker: Option<Rc<Worker<T, J, A, R>>>,
}

impl<T: Stage, J: Stage, A: Stage, R: Stage> Context for Root<T, J, A, R> {
    fn on_http_call_response(&mut self, token: u32, _headers: usize, body: usize, _t: usize) {
        if let Some(worker) = self.worker.clone() {
            worker.http_call_answer(self.id, token, body);
        }
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(worker) = self.worker.clone() {
            worker.grpc_answer(token, status, size, Some(self.id));
        }
    }
}

impl<T: Stage, J: Stage, A: Stage, R: Stage> RootContext for Root<T, J, A, R> {
    fn on_configure(&mut self, _size: usize) -> bool {
        let Some(stages) = (self.configure)(crate::plugin_configuration()) else {
            return false;
        };
        self.worker = Some(Rc::new(Worker {
            stages,
            parked: Parked::new(),
            calls: Parked::new(),
        }));
        true
    }

    fn on_tick(&mut self) {
        if let Some(worker) = self.worker.clone() {
            worker.tick(self.id);
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Http {
            id: context_id,
            worker: self.worker.clone(),
            unconfigured: self.unconfigured,
            request: None,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http<T: Stage, J: Stage, A: Stage, R: Stage> {
    id: u32,
    worker: Option<Rc<Worker<T, J, A, R>>>,
    unconfigured: fn(),
    /// The request, while it is here and not parked in the worker.
    request: Option<Request<T, J, A, R>>,
}

impl<T: Stage, J: Stage, A: Stage, R: Stage> Http<T, J, A, R> {
    /// The request and the stages, the request taken back from the worker if parked there.
    fn with<Z>(
        &mut self,
        f: impl FnOnce(&Stages<T, J, A, R>, &mut Request<T, J, A, R>) -> Z,
    ) -> Option<Z> {
        if !Worker::<T, J, A, R>::RESPONDS {
            return None;
        }
        let worker = self.worker.as_ref()?;
        if self.request.is_none() {
            self.request = worker.parked.remove(self.id);
        }
        let q = self.request.as_mut()?;
        q.x.forget_clock();
        Some(f(&worker.stages, q))
    }
}

impl<T: Stage, J: Stage, A: Stage, R: Stage> Context for Http<T, J, A, R> {
    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        if let Some(worker) = self.worker.clone() {
            worker.grpc_answer(token, status, size, None);
        }
    }

    fn on_done(&mut self) -> bool {
        if let Some(worker) = &self.worker {
            worker.parked.remove(self.id);
            if Worker::<T, J, A, R>::CALLS_OUT {
                worker.calls.retain(|_, c| *c != self.id);
            }
            let s = &worker.stages;
            s.token_issuer.iter().for_each(|t| t.done(self.id));
            s.jwt.iter().for_each(|j| j.done(self.id));
            s.acl.iter().for_each(|a| a.done(self.id));
            s.rate_limiting.iter().for_each(|r| r.done(self.id));
        }
        true
    }
}

/// Runs each stage's response callback, last stage first, until one holds the response.
macro_rules! reverse {
    ($s:ident, $q:ident, |$stage:ident, $r:ident| $call:expr) => {{
        let mut action = Action::Continue;
        if let Some($stage) = &$s.rate_limiting {
            let $r = &mut $q.r;
            action = $call;
        }
        if action == Action::Continue {
            if let Some($stage) = &$s.acl {
                let $r = &mut $q.a;
                action = $call;
            }
        }
        if action == Action::Continue {
            if let Some($stage) = &$s.jwt {
                let $r = &mut $q.j;
                action = $call;
            }
        }
        if action == Action::Continue {
            if let Some($stage) = &$s.token_issuer {
                let $r = &mut $q.t;
                action = $call;
            }
        }
        action
    }};
}

impl<T: Stage, J: Stage, A: Stage, R: Stage> HttpContext for Http<T, J, A, R> {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        let Some(worker) = self.worker.clone() else {
            (self.unconfigured)();
            return Action::Pause;
        };
        let mut q = Request {
            x: Exchange::new(self.id),
            at: 0,
            t: T::Request::default(),
            j: J::Request::default(),
            a: A::Request::default(),
            r: R::Request::default(),
        };
        match worker.run(0, &mut q) {
            Step::Next => {
                self.request = Some(q);
                Action::Continue
            }
            Step::Answered => {
                self.request = Some(q);
                Action::Pause
            }
            Step::Wait => {
                worker.park(self.id, q);
                Action::Pause
            }
        }
    }

    fn on_http_response_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        self.with(|s, q| reverse!(s, q, |stage, r| stage.response_headers(r, end_of_stream)))
            .unwrap_or(Action::Continue)
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        self.with(|s, q| reverse!(s, q, |stage, r| stage.response_body(r, size, end_of_stream)))
            .unwrap_or(Action::Continue)
    }

    fn on_http_response_trailers(&mut self, _trailers: usize) -> Action {
        self.with(|s, q| reverse!(s, q, |stage, r| stage.response_trailers(r)))
            .unwrap_or(Action::Continue)
    }
}

/// What a request gets from a module that was never configured (Envoy does not normally
/// create streams then): Kong's 500, never a pass.
pub fn unconfigured() {
    crate::host::respond_json(500, portcullis_core::UNEXPECTED_ERROR_BODY, &[]);
}
