//! Liveness and metrics: `/healthz` and `/metrics` (Prometheus text).

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use gridreg_protocol::api::Health;

use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

async fn healthz(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        log_size: state.view.latest().size,
        status: "ok".to_string(),
    })
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    text.push_str("# HELP gridreg_audits_total Audits of uploaded content run for publishes (publishes sharing one count once).\n");
    text.push_str("# TYPE gridreg_audits_total counter\n");
    text.push_str(&format!("gridreg_audits_total {}\n", state.audits.runs()));
    let witnesses = state.witnesses.report();
    if !witnesses.is_empty() {
        let size = state.view.latest().size;
        text.push_str("# HELP gridreg_witness_lag_entries Entries between the newest checkpoint and the newest one each witness cosigned (the whole log when it never did).\n");
        text.push_str("# TYPE gridreg_witness_lag_entries gauge\n");
        for w in &witnesses {
            text.push_str(&format!(
                "gridreg_witness_lag_entries{{witness=\"{}\"}} {}\n",
                w.name,
                size.saturating_sub(w.cosigned_size.unwrap_or(0))
            ));
        }
        text.push_str(
            "# HELP gridreg_witness_failing Whether the last submission to each witness failed.\n",
        );
        text.push_str("# TYPE gridreg_witness_failing gauge\n");
        for w in &witnesses {
            text.push_str(&format!(
                "gridreg_witness_failing{{witness=\"{}\"}} {}\n",
                w.name,
                u8::from(w.last_error.is_some())
            ));
        }
    }
    ([(CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
