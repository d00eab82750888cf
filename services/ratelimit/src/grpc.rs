//! The gRPC server's outermost service: every answer passes through it, so every error
//! answer is counted by its status — the service's own (`INVALID_ARGUMENT`,
//! `UNAVAILABLE`), the shared secret's (`UNAUTHENTICATED`), and tonic's (an unknown method,
//! a message that does not decode).
//!
//! tonic answers a unary call's error "trailers-only": `grpc-status` in the response head,
//! so reading the head is enough and the body is passed through untouched. A success
//! carries its `grpc-status: 0` in the trailers and is not an error.

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::codegen::http::{Request, Response, StatusCode};
use tonic::codegen::{BoxFuture, Service};

use crate::metrics::Metrics;

/// `inner`, its error answers counted in `metrics`.
#[derive(Clone)]
pub struct CountErrors<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> CountErrors<S> {
    pub fn new(inner: S, metrics: Arc<Metrics>) -> CountErrors<S> {
        CountErrors { inner, metrics }
    }
}

impl<S, B, ResBody> Service<Request<B>> for CountErrors<S>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let answer = self.inner.call(request);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let response = answer.await?;
            if let Some(code) = error(&response) {
                metrics.grpc_error(code);
            }
            Ok(response)
        })
    }
}

/// Whether `response` is an error answer: `Some(Some(code))` for a non-zero `grpc-status`
/// in its head, `Some(None)` for an HTTP status other than 200 without one (or a status
/// that is not a number), `None` for an answer that is not an error.
fn error<B>(response: &Response<B>) -> Option<Option<i32>> {
    match response.headers().get("grpc-status") {
        Some(value) => match value.to_str().ok().and_then(|v| v.parse::<i32>().ok()) {
            Some(0) => None,
            Some(code) => Some(Some(code)),
            None => Some(None),
        },
        None if response.status() != StatusCode::OK => Some(None),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, grpc_status: Option<&str>) -> Response<()> {
        let mut builder = Response::builder().status(status);
        if let Some(code) = grpc_status {
            builder = builder.header("grpc-status", code);
        }
        builder.body(()).unwrap()
    }

    #[test]
    fn reads_the_status_from_a_trailers_only_head() {
        assert_eq!(error(&answer(200, Some("16"))), Some(Some(16)));
        assert_eq!(error(&answer(200, Some("0"))), None);
        // A success: grpc-status comes in the trailers.
        assert_eq!(error(&answer(200, None)), None);
        assert_eq!(error(&answer(415, None)), Some(None));
        assert_eq!(error(&answer(200, Some("nope"))), Some(None));
    }
}
