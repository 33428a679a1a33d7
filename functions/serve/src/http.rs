//! The HTTP side of `prdiff serve`: `POST /webhook` (GitHub and GitLab deliveries, the same
//! handler as the Lambda's Function URL), `POST /trigger` (on-demand runs for CI systems,
//! with a bearer token) and `GET /healthz` (queue depths, dead letters).
//!
//! The endpoint faces the internet, so what one client can hold is bounded (see
//! [`HttpLimits`]): a request's headers must arrive within `header_timeout` (an idle
//! connection is closed after as long), its body within `body_timeout`, and at most
//! `max_connections` connections are served at once: more wait in the listen backlog
//! until one ends. When `accept` fails (out of file handles, say), the loop pauses briefly
//! and logs at most one warning a second instead of spinning.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prdiff_shared::app::intake::{WebhookRequest, WebhookResponse};
use prdiff_shared::queue::embedded::EmbeddedQueues;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::{Counters, DIFF_QUEUE, HttpLimits, POLL_QUEUE, SYNC_QUEUE};

#[derive(Clone)]
pub(crate) struct State {
    pub webhook: Arc<prdiff_shared::app::intake::Deps>,
    pub queues: EmbeddedQueues,
    pub counters: Arc<Counters>,
    pub limits: HttpLimits,
}

/// How long the accept loop pauses after a failure that is not about one connection.
pub(crate) const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one "accept failed" warning per this interval; the rest are counted.
pub(crate) const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(1);

/// Paces the accept loop after failures.
#[derive(Debug, Default)]
pub(crate) struct AcceptErrors {
    last_warning: Option<Instant>,
    /// Failures since the last warning that were not logged.
    suppressed: u64,
}

/// What to do about one failed `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AcceptFailure {
    /// `Some(n)`: log a warning now, saying `n` failures went unlogged since the last.
    pub warn: Option<u64>,
    /// Sleep this long before accepting again.
    pub pause: Duration,
}

impl AcceptErrors {
    pub(crate) fn on_error(&mut self, error: &io::Error, now: Instant) -> AcceptFailure {
        // A connection reset before it was accepted says nothing about the server; the
        // others (EMFILE, ENFILE, ENOBUFS, ENOMEM…) persist until something is released,
        // so retrying at once would only spin.
        let pause = match error.kind() {
            io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted => Duration::ZERO,
            _ => ACCEPT_PAUSE,
        };
        let due = self
            .last_warning
            .is_none_or(|at| now.saturating_duration_since(at) >= ACCEPT_WARN_EVERY);
        let warn = if due {
            self.last_warning = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        };
        AcceptFailure { warn, pause }
    }
}

/// Counts a connection as open for its life.
struct OpenConnection(Arc<Counters>);

impl OpenConnection {
    fn new(counters: &Arc<Counters>) -> Self {
        counters.open_connections.fetch_add(1, Ordering::Relaxed);
        Self(counters.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts connections until `stop`; then lets open requests finish.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    mut stop: watch::Receiver<bool>,
) {
    let limits = state.limits.clone();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(
            %addr,
            max_connections = limits.max_connections,
            header_timeout_s = limits.header_timeout.as_secs_f64(),
            body_timeout_s = limits.body_timeout.as_secs_f64(),
            "webhook endpoint: POST /webhook"
        );
    }
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let mut errors = AcceptErrors::default();
    let mut connections = JoinSet::new();
    loop {
        // A free slot first: with none, connections wait in the kernel's backlog.
        let slot = tokio::select! {
            s = slots.clone().acquire_owned() => s.expect("the semaphore is never closed"),
            _ = stop.changed() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                drop(slot);
                let failure = errors.on_error(&e, Instant::now());
                if let Some(unlogged) = failure.warn {
                    tracing::warn!(
                        error = %e,
                        unlogged_since_last_warning = unlogged,
                        pause_ms = failure.pause.as_millis() as u64,
                        "accept failed"
                    );
                }
                if !failure.pause.is_zero() {
                    tokio::select! {
                        _ = tokio::time::sleep(failure.pause) => {}
                        _ = stop.changed() => break,
                    }
                }
                continue;
            }
        };
        let state = state.clone();
        let mut stop = stop.clone();
        let open = OpenConnection::new(&state.counters);
        let header_timeout = limits.header_timeout;
        connections.spawn(async move {
            let _slot = slot;
            let _open = open;
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, &state).await) }
            });
            // The header timeout also closes a connection idle between requests.
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

fn respond(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a static response is valid")
}

fn error(status: u16, message: &str) -> Response<Full<Bytes>> {
    respond(status, &json!({ "error": message }))
}

async fn route(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::POST, "/webhook") => webhook(req, state, Endpoint::Webhook).await,
        (&Method::POST, "/trigger") => webhook(req, state, Endpoint::Trigger).await,
        (&Method::GET, "/healthz") => health(state),
        (_, "/webhook") => error(405, "use POST /webhook"),
        (_, "/trigger") => error(405, "use POST /trigger"),
        (_, "/healthz") => error(405, "use GET /healthz"),
        (_, path) => error(
            404,
            &format!("no route {path}: POST /webhook, POST /trigger, GET /healthz"),
        ),
    }
}

/// Which handler a POST goes to.
#[derive(Clone, Copy)]
enum Endpoint {
    Webhook,
    Trigger,
}

async fn webhook(
    req: Request<Incoming>,
    state: &State,
    endpoint: Endpoint,
) -> Response<Full<Bytes>> {
    let limit = state.webhook.settings.max_body_bytes;
    let declared = req
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return error(413, &format!("body over {limit} bytes"));
    }
    let (parts, body) = req.into_parts();
    let timeout = state.limits.body_timeout;
    let read = tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await;
    let body = match read {
        Ok(Ok(b)) => b.to_bytes().to_vec(),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            return error(413, &format!("body over {limit} bytes"));
        }
        Ok(Err(e)) => return error(400, &format!("cannot read the body: {e}")),
        Err(_) => {
            tracing::debug!(
                timeout_s = timeout.as_secs_f64(),
                "request body too slow; connection closed"
            );
            let mut resp = error(
                408,
                &format!("the body did not arrive within {} s", timeout.as_secs_f64()),
            );
            resp.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return resp;
        }
    };
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let request = WebhookRequest::new(headers, body);
    let WebhookResponse { status, body } = match endpoint {
        Endpoint::Webhook => prdiff_shared::app::intake::handle(&request, &state.webhook).await,
        Endpoint::Trigger => prdiff_shared::app::trigger::handle(&request, &state.webhook).await,
    };
    respond(status, &body)
}

fn health(state: &State) -> Response<Full<Bytes>> {
    let mut queues = serde_json::Map::new();
    for name in [POLL_QUEUE, DIFF_QUEUE, SYNC_QUEUE] {
        match state.queues.queue(name).len() {
            Ok(n) => queues.insert(name.to_owned(), n.into()),
            Err(e) => return error(503, &format!("queue {name} unreadable: {e}")),
        };
    }
    let dead = match state.queues.dead_letters() {
        Ok(d) => d.len(),
        Err(e) => return error(503, &format!("dead letters unreadable: {e}")),
    };
    let c = &state.counters;
    respond(
        200,
        &json!({
            "status": "ok",
            "queues": queues,
            "dead_letters": dead,
            "handled": c.handled.load(Ordering::Relaxed),
            "retried": c.retried.load(Ordering::Relaxed),
            "dead_lettered": c.dead_lettered.load(Ordering::Relaxed),
            "connections": c.open_connections.load(Ordering::Relaxed),
            "max_connections": state.limits.max_connections,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        io::Error::from_raw_os_error(24) // EMFILE: too many open files
    }

    #[test]
    fn accept_failures_pause_the_loop_and_warn_at_most_once_a_second() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        let first = errors.on_error(&emfile(), t0);
        assert_eq!(
            first,
            AcceptFailure {
                warn: Some(0),
                pause: ACCEPT_PAUSE
            }
        );
        // A tight loop of failures within the second: paused each time, none logged.
        for i in 1..=50u64 {
            let f = errors.on_error(&emfile(), t0 + Duration::from_millis(i * 10));
            assert_eq!(f.warn, None, "failure {i}");
            assert_eq!(f.pause, ACCEPT_PAUSE);
        }
        // The next warning, a second after the first, counts the ones not logged.
        let next = errors.on_error(&emfile(), t0 + ACCEPT_WARN_EVERY);
        assert_eq!(next.warn, Some(50));
        let after = errors.on_error(&emfile(), t0 + ACCEPT_WARN_EVERY + Duration::from_millis(1));
        assert_eq!(after.warn, None);
    }

    #[test]
    fn a_connection_reset_before_accept_does_not_pause_the_loop() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        let reset = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(errors.on_error(&reset, t0).pause, Duration::ZERO);
        assert_eq!(errors.on_error(&emfile(), t0).pause, ACCEPT_PAUSE);
        // Both count toward the same warning budget.
        assert_eq!(errors.on_error(&reset, t0).warn, None);
    }

    #[test]
    fn a_million_failures_in_a_simulated_minute_log_about_sixty_warnings() {
        let mut errors = AcceptErrors::default();
        let t0 = Instant::now();
        let mut warnings = 0;
        let mut counted = 0;
        for i in 0..1_000_000u64 {
            // One failure every 60 µs for a minute.
            let f = errors.on_error(&emfile(), t0 + Duration::from_micros(i * 60));
            if let Some(unlogged) = f.warn {
                warnings += 1;
                counted += unlogged + 1;
            }
        }
        assert_eq!(warnings, 60);
        // Every failure is logged, counted in a later warning, or waiting to be.
        assert_eq!(counted + errors.suppressed, 1_000_000);
    }
}
