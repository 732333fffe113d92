//! The node's status server (TiKV's status address): plain HTTP for Prometheus, load balancers
//! and operators, apart from the QUIC port so that a scrape needs no client certificate.
//! `/metrics` is the Prometheus text format, `/health` answers 200 while the raft loop answers
//! and every region it holds knows a leader (503 otherwise, with the reason), `/status` is the
//! store at a glance in JSON, and `/debug/pprof/profile?seconds=N` samples the process's CPU
//! for N seconds and answers a flame graph (SVG). It reads; it changes nothing.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::metrics::{self, Metrics};
use crate::raftstore::{RegionHealth, StoreFailure, StoreMsg};

/// How long `/health` waits for the raft loop: one that cannot answer this fast is not serving.
const LOOP_PATIENCE: Duration = Duration::from_secs(2);

/// What the handlers read.
#[derive(Clone)]
pub(crate) struct StatusState {
    pub store_id: u64,
    pub addr: SocketAddr,
    pub data_dir: PathBuf,
    pub started: Instant,
    pub metrics: Arc<Metrics>,
    pub tx: mpsc::Sender<StoreMsg>,
    pub failure: watch::Receiver<Option<StoreFailure>>,
}

/// Serves on `listener` until the returned task is aborted.
pub(crate) fn serve(
    listener: tokio::net::TcpListener,
    state: StatusState,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/health", get(serve_health))
        .route("/status", get(serve_status))
        .route("/debug/pprof/profile", get(serve_profile))
        .with_state(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the status server stopped");
        }
    })
}

async fn serve_metrics(State(state): State<StatusState>) -> Response {
    // Walking the data dir and statvfs are file-system work: off the async threads.
    let dir = state.data_dir.clone();
    let disk = tokio::task::spawn_blocking(move || {
        let used = crate::service::dir_size(&dir);
        let available = crate::raftstore::fs_space(&dir).map(|s| s.available);
        (used, available)
    })
    .await;
    if let Ok((used, available)) = disk {
        state.metrics.set_disk(used, available.unwrap_or(0));
    }
    // The region gauges are set about once a second by the loop; a scrape sees them fresh
    // when the loop answers at once.
    let _ = ask_health(&state).await;
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// Why the store is not healthy, or how its regions stand.
async fn ask_health(state: &StatusState) -> Result<RegionHealth, String> {
    if let Some(f) = state.failure.borrow().as_ref() {
        return Err(format!("the store stopped: {}", f.cause));
    }
    let (reply, rx) = oneshot::channel();
    if state.tx.try_send(StoreMsg::Health(reply)).is_err() {
        return Err("the raft loop is not taking requests (busy or stopped)".into());
    }
    match tokio::time::timeout(LOOP_PATIENCE, rx).await {
        Ok(Ok(health)) => Ok(health),
        Ok(Err(_)) => Err("the raft loop stopped".into()),
        Err(_) => Err(format!(
            "the raft loop did not answer within {LOOP_PATIENCE:?}"
        )),
    }
}

async fn serve_health(State(state): State<StatusState>) -> Response {
    match ask_health(&state).await {
        Ok(h) if h.without_leader.is_empty() => (
            StatusCode::OK,
            axum::Json(json!({
                "health": "ok",
                "regions": h.regions,
                "leaders": h.leaders,
            })),
        )
            .into_response(),
        Ok(h) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "health": "unavailable",
                "reason": format!(
                    "{} of {} regions know no leader: {:?}",
                    h.without_leader.len(),
                    h.regions,
                    h.without_leader
                ),
                "regions": h.regions,
                "leaders": h.leaders,
                "regions_without_leader": h.without_leader,
            })),
        )
            .into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "health": "unavailable", "reason": reason })),
        )
            .into_response(),
    }
}

/// The most seconds one profile may sample.
const MAX_PROFILE_SECS: u64 = 120;
/// Samples per second: prime, so it does not beat with periodic work (ticks).
const PROFILE_FREQUENCY: i32 = 99;

#[derive(serde::Deserialize)]
struct ProfileParams {
    seconds: Option<u64>,
}

async fn serve_profile(Query(params): Query<ProfileParams>) -> Response {
    let seconds = params.seconds.unwrap_or(10);
    if seconds == 0 || seconds > MAX_PROFILE_SECS {
        return (
            StatusCode::BAD_REQUEST,
            format!("seconds must be between 1 and {MAX_PROFILE_SECS}\n"),
        )
            .into_response();
    }
    // The profiler is process-wide and its guard is not Send: sample on a blocking thread.
    let profile = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, String> {
        let guard = pprof::ProfilerGuardBuilder::default()
            .frequency(PROFILE_FREQUENCY)
            .blocklist(&["libc", "libgcc", "pthread", "vdso"])
            .build()
            .map_err(|e| format!("cannot start the profiler (is another profile running?): {e}"))?;
        std::thread::sleep(Duration::from_secs(seconds));
        let report = guard
            .report()
            .build()
            .map_err(|e| format!("cannot build the profile: {e}"))?;
        let mut svg = Vec::new();
        report
            .flamegraph(&mut svg)
            .map_err(|e| format!("cannot draw the flame graph: {e}"))?;
        Ok(svg)
    })
    .await;
    match profile {
        Ok(Ok(svg)) if svg.is_empty() => (
            [(header::CONTENT_TYPE, "image/svg+xml")],
            format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"640\" height=\"40\">\
                 <text x=\"10\" y=\"25\">no CPU samples in {seconds} s: the node was idle; \
                 profile it while it works</text></svg>\n"
            ),
        )
            .into_response(),
        Ok(Ok(svg)) => ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response(),
        Ok(Err(reason)) => (StatusCode::SERVICE_UNAVAILABLE, reason + "\n").into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the profiler thread failed: {e}\n"),
        )
            .into_response(),
    }
}

async fn serve_status(State(state): State<StatusState>) -> Response {
    let health = ask_health(&state).await;
    let mut body = json!({
        "store_id": state.store_id,
        "addr": state.addr.to_string(),
        "version": crate::build(),
        "uptime_secs": state.started.elapsed().as_secs(),
        "data_dir": state.data_dir.display().to_string(),
    });
    match health {
        Ok(h) => {
            body["regions"] = json!(h.regions);
            body["leaders"] = json!(h.leaders);
            body["regions_without_leader"] = json!(h.without_leader);
        }
        Err(reason) => body["unavailable"] = json!(reason),
    }
    axum::Json(body).into_response()
}
