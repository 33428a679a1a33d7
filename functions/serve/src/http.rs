//! The HTTP side of `prdiff serve`: `POST /webhook` (GitHub and GitLab deliveries, the same
//! handler as the Lambda's Function URL) and `GET /healthz` (queue depths, dead letters).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prdiff_shared::queue::embedded::EmbeddedQueues;
use prdiff_webhook::{WebhookRequest, WebhookResponse};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::{Counters, DIFF_QUEUE, POLL_QUEUE, SYNC_QUEUE};

#[derive(Clone)]
pub(crate) struct State {
    pub webhook: Arc<prdiff_webhook::Deps>,
    pub queues: EmbeddedQueues,
    pub counters: Arc<Counters>,
}

/// Accepts connections until `stop`; then lets open requests finish.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: State,
    mut stop: watch::Receiver<bool>,
) {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "webhook endpoint: POST /webhook");
    }
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let state = state.clone();
        let mut stop = stop.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(req, &state).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
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
        (&Method::POST, "/webhook") => webhook(req, state).await,
        (&Method::GET, "/healthz") => health(state),
        (_, "/webhook") => error(405, "use POST /webhook"),
        (_, "/healthz") => error(405, "use GET /healthz"),
        (_, path) => error(
            404,
            &format!("no route {path}: POST /webhook, GET /healthz"),
        ),
    }
}

async fn webhook(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
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
    let body = match Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return error(413, &format!("body over {limit} bytes"));
        }
        Err(e) => return error(400, &format!("cannot read the body: {e}")),
    };
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
        .collect();
    let request = WebhookRequest::new(headers, body);
    let WebhookResponse { status, body } = prdiff_webhook::handle(&request, &state.webhook).await;
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
        }),
    )
}
