//! Leader change through the real Kubernetes Lease client: two electors with `KubeLeaseStore`
//! against a minimal `coordination.k8s.io/v1` Lease endpoint on loopback that enforces the API
//! server's rules (409 AlreadyExists on create, 409 Conflict on a stale resourceVersion), so a
//! crash (no release) can be staged and the Lease inspected without a whole lab; `lab.rs` runs
//! two replicas against the lab's own Lease.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, response::IntoResponse};
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use vmbgp_controller::leader::{Elector, KubeLeaseStore, Timing};

const WAIT: Duration = Duration::from_secs(60);

type Slot = Arc<Mutex<Option<Value>>>;

fn status(code: u16, reason: &str) -> axum::response::Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": reason, "reason": reason, "code": code});
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        Json(body),
    )
        .into_response()
}

async fn read(State(slot): State<Slot>) -> axum::response::Response {
    match slot.lock().ok().and_then(|s| s.clone()) {
        Some(lease) => Json(lease).into_response(),
        None => status(404, "NotFound"),
    }
}

async fn create(
    State(slot): State<Slot>,
    Json(mut lease): Json<Value>,
) -> axum::response::Response {
    let Ok(mut slot) = slot.lock() else {
        return status(500, "InternalError");
    };
    if slot.is_some() {
        return status(409, "AlreadyExists");
    }
    lease["metadata"]["resourceVersion"] = json!("1");
    *slot = Some(lease.clone());
    (StatusCode::CREATED, Json(lease)).into_response()
}

async fn replace(
    State(slot): State<Slot>,
    Json(mut lease): Json<Value>,
) -> axum::response::Response {
    let Ok(mut slot) = slot.lock() else {
        return status(500, "InternalError");
    };
    let Some(current) = slot.as_ref() else {
        return status(404, "NotFound");
    };
    let version = current["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("0")
        .to_string();
    if lease["metadata"]["resourceVersion"].as_str() != Some(version.as_str()) {
        return status(409, "Conflict");
    }
    let next = version.parse::<u64>().unwrap_or(0) + 1;
    lease["metadata"]["resourceVersion"] = json!(next.to_string());
    *slot = Some(lease.clone());
    Json(lease).into_response()
}

async fn lease_server() -> (String, Slot) {
    let slot: Slot = Arc::default();
    let app = Router::new()
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases",
            post(create),
        )
        .route(
            "/apis/coordination.k8s.io/v1/namespaces/ns/leases/lock",
            get(read).put(replace),
        )
        .with_state(slot.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), slot)
}

fn holder(slot: &Slot) -> Option<String> {
    slot.lock().ok()?.as_ref()?["spec"]["holderIdentity"]
        .as_str()
        .map(str::to_string)
}

fn client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().expect("url"));
    kube::Client::try_from(config).expect("client")
}

fn timing() -> Timing {
    Timing {
        lease_duration: Duration::from_secs(5),
        retry_period: Duration::from_millis(100),
    }
}

async fn leads(rx: &mut watch::Receiver<bool>) {
    tokio::time::timeout(WAIT, rx.wait_for(|l| *l))
        .await
        .expect("leads in time")
        .expect("open");
}

#[tokio::test]
async fn second_instance_takes_over_after_a_clean_stop_and_after_a_crash() {
    let (url, slot) = lease_server().await;
    let start = |identity: &'static str| {
        let (tx, rx) = watch::channel(false);
        let stop = CancellationToken::new();
        let store = KubeLeaseStore::new(client(&url), "ns", "lock");
        let task = tokio::spawn(Elector::new(store, identity, timing()).run(tx, stop.clone()));
        (rx, stop, task)
    };
    let (mut a_rx, a_stop, a_task) = start("a");
    leads(&mut a_rx).await;
    let acquired = |slot: &Slot| {
        slot.lock()
            .ok()
            .and_then(|s| s.as_ref().map(|l| l["spec"]["acquireTime"].clone()))
    };
    let a_acquired = acquired(&slot);
    let (mut b_rx, b_stop, b_task) = start("b");
    // b watches a renew for several lease durations and never leads.
    for _ in 0..30 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!*b_rx.borrow(), "b leads while a renews");
    }
    assert_eq!(holder(&slot).as_deref(), Some("a"));
    assert_eq!(
        acquired(&slot),
        a_acquired,
        "renewals keep the acquire time"
    );
    assert_ne!(
        slot.lock()
            .ok()
            .and_then(|s| s.as_ref().map(|l| l["spec"]["renewTime"].clone())),
        a_acquired,
        "renewals move the renew time"
    );
    // Clean stop: a releases, b takes over.
    a_stop.cancel();
    a_task.await.expect("a stops");
    leads(&mut b_rx).await;
    assert_eq!(holder(&slot).as_deref(), Some("b"));

    // A crash (no release): c takes over once b's record stops changing for a lease duration.
    let (mut c_rx, c_stop, c_task) = start("c");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!*c_rx.borrow(), "c leads while b renews");
    b_task.abort();
    let _ = b_task.await;
    leads(&mut c_rx).await;
    assert_eq!(holder(&slot).as_deref(), Some("c"));
    let transitions = slot
        .lock()
        .ok()
        .and_then(|s| s.as_ref().map(|l| l["spec"]["leaseTransitions"].clone()));
    assert_eq!(transitions, Some(json!(2)));
    drop(b_stop);
    c_stop.cancel();
    c_task.await.expect("c stops");
}
