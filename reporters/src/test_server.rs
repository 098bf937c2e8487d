//! An Elasticsearch-compatible test server on 127.0.0.1:0 (feature `test-server`), for this
//! crate's tests and the harness's lab runs with `--es-server`: `_cluster/health`, index
//! HEAD/PUT, `_index_template`, `_bulk` (stores documents by `_id`, records every body) and
//! `_search` (term on `uuid.keyword`, terms on `metricName.keyword`). A script makes the next
//! `_bulk` requests answer 429, 500, time out, or return per-item errors; a second script
//! ([`EsTestServer::script_any`]) does the same to the next requests of any kind (index HEAD/PUT,
//! health, search). [`EsTestServer::start_on`] serves on a port chosen beforehand (a server that
//! comes up late), and [`HungServer`] accepts connections and never answers.
//!
//! Each index has a mapping enforced as Elasticsearch enforces it ([`mapping`]): created from the
//! highest-priority index template whose pattern matches when the index is created (by PUT or by
//! its first `_bulk` item), then grown by dynamic mapping; a document whose field types conflict
//! with it fails alone, with item status 400 and `mapper_parsing_exception`.

pub mod mapping;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Value, json};

use self::mapping::{FieldType, Mappings};

/// What the next `_bulk` request gets.
#[derive(Debug, Clone)]
pub enum Behaviour {
    /// Whole request fails with this status (and `Retry-After: 0`).
    Status(u16),
    /// Whole request answers 413 (a proxy with a small body limit).
    TooLarge,
    /// Answers after this delay (the client times out first); documents are still stored,
    /// as a real cluster may do.
    Delay(Duration),
    /// Item statuses by position; items beyond the list succeed.
    Items(Vec<u16>),
}

#[derive(Debug, Default)]
pub struct Recorded {
    pub documents: BTreeMap<(String, String), Value>,
    pub bulk_bodies: Vec<String>,
    pub bulk_times: Vec<Instant>,
    pub authorization: Vec<Option<String>>,
    pub indexes: BTreeSet<String>,
    pub index_creations: usize,
    pub templates: BTreeMap<String, Value>,
    /// Per index: its mapping, fixed when the index was created and grown by dynamic mapping.
    pub mappings: BTreeMap<String, Mappings>,
    pub script: VecDeque<Behaviour>,
    /// Applied to the next requests of any kind, before `script`: `Status` answers instead of
    /// the endpoint, `Delay` delays it, `TooLarge` answers 413; `Items` lets it through.
    pub script_any: VecDeque<Behaviour>,
    /// Every request as `METHOD /path`, in arrival order.
    pub requests: Vec<String>,
    pub health_failures: usize,
}

#[derive(Debug, Clone)]
pub struct EsTestServer {
    pub url: String,
    pub port: u16,
    pub state: Arc<Mutex<Recorded>>,
}

impl EsTestServer {
    /// Binds 127.0.0.1:0 and serves until the runtime shuts down.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(0).await
    }

    /// Binds 127.0.0.1:`port` (0: any free port) and serves until the runtime shuts down.
    pub async fn start_on(port: u16) -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(Recorded::default()));
        let app = Router::new()
            .route("/_cluster/health", get(health))
            .route("/_bulk", post(bulk))
            .route("/_index_template/{name}", put(template))
            .route("/{index}", get(exists).head(exists).put(create))
            .route("/{index}/_search", post(search))
            // Elasticsearch accepts 100 MB requests by default (http.max_content_length).
            .layer(axum::extract::DefaultBodyLimit::max(100 * 1024 * 1024))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                scripted,
            ))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        tokio::spawn(async move {
            // Serving ends only with the runtime; an accept error ends the test server.
            let _ = axum::serve(listener, app).await;
        });
        Ok(EsTestServer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            state,
        })
    }

    pub fn script(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        lock(&self.state).script.extend(behaviours);
    }

    /// Scripts the next requests of any kind (see [`Recorded::script_any`]).
    pub fn script_any(&self, behaviours: impl IntoIterator<Item = Behaviour>) {
        lock(&self.state).script_any.extend(behaviours);
    }

    /// Every request so far as `METHOD /path`.
    pub fn requests(&self) -> Vec<String> {
        lock(&self.state).requests.clone()
    }

    pub fn document_count(&self) -> usize {
        lock(&self.state).documents.len()
    }

    /// The mapped type of a field path in an index (`metadata.k8sVersion`), if mapped.
    pub fn field_type(&self, index: &str, path: &str) -> Option<FieldType> {
        lock(&self.state)
            .mappings
            .get(index)
            .and_then(|m| m.field(path))
            .cloned()
    }

    pub fn bulk_bodies(&self) -> Vec<String> {
        lock(&self.state).bulk_bodies.clone()
    }

    /// Documents per bulk request.
    pub fn bulk_sizes(&self) -> Vec<usize> {
        self.bulk_bodies()
            .iter()
            .map(|b| b.lines().filter(|l| !l.trim().is_empty()).count() / 2)
            .collect()
    }
}

type Shared = State<Arc<Mutex<Recorded>>>;

/// Records every request and applies `script_any` before the endpoint sees it.
async fn scripted(State(state): Shared, request: Request, next: Next) -> Response {
    let behaviour = {
        let mut state = lock(&state);
        let line = format!("{} {}", request.method(), request.uri().path());
        state.requests.push(line);
        state.script_any.pop_front()
    };
    match behaviour {
        Some(Behaviour::Status(code)) => scripted_status(code),
        Some(Behaviour::TooLarge) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "request entity too large").into_response()
        }
        Some(Behaviour::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Behaviour::Items(_)) | None => next.run(request).await,
    }
}

/// A whole-request failure as Elasticsearch answers it, with `Retry-After: 0`.
fn scripted_status(code: u16) -> Response {
    (
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("retry-after", "0")],
        axum::Json(
            json!({"error": {"type": "scripted", "reason": "scripted failure"}, "status": code}),
        ),
    )
        .into_response()
}

/// A server that accepts TCP connections on 127.0.0.1 and never answers: what a hung
/// Elasticsearch node (or a stalled proxy) looks like to a client. Connections are read and
/// discarded until the client closes them; serving ends with the runtime.
#[derive(Debug, Clone)]
pub struct HungServer {
    pub url: String,
    pub port: u16,
    accepted: Arc<AtomicUsize>,
}

impl HungServer {
    /// At most this many connections are accepted (later ones wait in the backlog, unanswered too).
    pub const MAX_CONNECTIONS: usize = 256;
    /// A held connection is dropped after this long even if the client never closes it.
    pub const HOLD: Duration = Duration::from_secs(600);

    pub async fn start() -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            for _ in 0..Self::MAX_CONNECTIONS {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let drain = async {
                        let mut buffer = [0u8; 8192];
                        // Ends when the client closes (0) or the socket fails.
                        while let Ok(n) =
                            tokio::io::AsyncReadExt::read(&mut socket, &mut buffer).await
                        {
                            if n == 0 {
                                break;
                            }
                        }
                    };
                    let _ = tokio::time::timeout(Self::HOLD, drain).await;
                });
            }
            // Keep the listener open (unanswered backlog) for as long as a connection is held.
            tokio::time::sleep(Self::HOLD).await;
            drop(listener);
        });
        Ok(HungServer {
            url: format!("http://127.0.0.1:{port}"),
            port,
            accepted,
        })
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

/// A panicking handler must not hide what was recorded so far.
fn lock(state: &Mutex<Recorded>) -> std::sync::MutexGuard<'_, Recorded> {
    state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn health(State(state): Shared) -> Response {
    let mut state = lock(&state);
    if state.health_failures > 0 {
        state.health_failures -= 1;
        return (StatusCode::SERVICE_UNAVAILABLE, "{}").into_response();
    }
    axum::Json(json!({"cluster_name": "test", "status": "green"})).into_response()
}

async fn exists(State(state): Shared, Path(index): Path<String>) -> StatusCode {
    if lock(&state).indexes.contains(&index) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

async fn create(State(state): Shared, Path(index): Path<String>, body: Bytes) -> Response {
    let request: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(value) => value,
            Err(_) => return bad_request("parse_exception", "request body is not JSON"),
        }
    };
    let mut state = lock(&state);
    if state.indexes.contains(&index) {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"type": "resource_already_exists_exception"}})),
        )
            .into_response();
    }
    create_index(&mut state, &index);
    // Mappings in the request body come on top of the template's.
    if let (Some(mappings), Some(body_mappings)) =
        (state.mappings.get_mut(&index), request.get("mappings"))
    {
        mappings.merge_json(body_mappings);
    }
    state.index_creations += 1;
    axum::Json(json!({"acknowledged": true, "index": index})).into_response()
}

/// Creates an index with the mapping of the highest-priority template matching its name (a
/// composable template applies only at creation, and only the one that wins).
fn create_index(state: &mut Recorded, index: &str) {
    state.indexes.insert(index.to_owned());
    let template = state
        .templates
        .values()
        .filter(|t| template_patterns(t).iter().any(|p| mapping::glob(p, index)))
        .max_by_key(|t| t.get("priority").and_then(Value::as_u64).unwrap_or(0));
    let mappings = template
        .and_then(|t| t.pointer("/template/mappings"))
        .map(Mappings::from_json)
        .unwrap_or_default();
    state.mappings.insert(index.to_owned(), mappings);
}

fn template_patterns(template: &Value) -> Vec<String> {
    match template.get("index_patterns") {
        Some(Value::String(pattern)) => vec![pattern.clone()],
        Some(Value::Array(patterns)) => patterns
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

fn bad_request(kind: &str, reason: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({"error": {"type": kind, "reason": reason}, "status": 400})),
    )
        .into_response()
}

async fn template(State(state): Shared, Path(name): Path<String>, body: Bytes) -> Response {
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return bad_request("parse_exception", "request body is not JSON");
    };
    if template_patterns(&value).is_empty() {
        return bad_request(
            "action_request_validation_exception",
            "Validation Failed: 1: index patterns are missing;",
        );
    }
    lock(&state).templates.insert(name, value);
    axum::Json(json!({"acknowledged": true})).into_response()
}

async fn bulk(State(state): Shared, headers: HeaderMap, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let behaviour = {
        let mut state = lock(&state);
        state.bulk_bodies.push(text.clone());
        state.bulk_times.push(Instant::now());
        state.authorization.push(
            headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        );
        if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/x-ndjson")
        {
            return (
                StatusCode::NOT_ACCEPTABLE,
                "bulk needs application/x-ndjson",
            )
                .into_response();
        }
        state.script.pop_front()
    };
    let item_statuses = match behaviour {
        Some(Behaviour::Status(code)) => return scripted_status(code),
        Some(Behaviour::TooLarge) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request entity too large").into_response();
        }
        Some(Behaviour::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            Vec::new()
        }
        Some(Behaviour::Items(statuses)) => statuses,
        None => Vec::new(),
    };
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut items = Vec::new();
    let mut errors = false;
    let mut state = lock(&state);
    for (position, pair) in lines.chunks(2).enumerate() {
        let action: Option<Value> = serde_json::from_str(pair[0]).ok();
        let meta = action.as_ref().and_then(|a| a.get("index"));
        let index = meta.and_then(|m| m["_index"].as_str()).map(str::to_owned);
        let id = meta.and_then(|m| m["_id"].as_str()).map(str::to_owned);
        let source: Option<Value> = pair.get(1).and_then(|l| serde_json::from_str(l).ok());
        let (Some(index), Some(id), Some(source)) = (index, id, source) else {
            return (StatusCode::BAD_REQUEST, "malformed bulk line pair").into_response();
        };
        let status = item_statuses.get(position).copied().unwrap_or(0);
        // Elasticsearch creates a missing index on its first document (auto_create_index).
        if !state.mappings.contains_key(&index) {
            create_index(&mut state, &index);
        }
        if status >= 300 {
            errors = true;
            let kind = if status == 429 {
                "es_rejected_execution_exception"
            } else {
                "mapper_parsing_exception"
            };
            items.push(
                json!({"index": {"_index": index, "_id": id, "status": status,
                "error": {"type": kind, "reason": "scripted item failure"}}}),
            );
            continue;
        }
        let mapped = state
            .mappings
            .get_mut(&index)
            .map_or(Ok(()), |m| m.index(&id, &source));
        if let Err(error) = mapped {
            errors = true;
            items.push(json!({"index": {"_index": index, "_id": id, "status": 400,
                "error": {"type": error.error_type(), "reason": error.to_string()}}}));
            continue;
        }
        let existed = state
            .documents
            .insert((index.clone(), id.clone()), source)
            .is_some();
        items.push(json!({"index": {"_index": index, "_id": id,
            "result": if existed {"updated"} else {"created"},
            "status": if existed {200} else {201}}}));
    }
    axum::Json(json!({"took": 1, "errors": errors, "items": items})).into_response()
}

async fn search(State(state): Shared, Path(index): Path<String>, body: Bytes) -> Response {
    let query: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let filters = query
        .pointer("/query/bool/filter")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let uuid = filters
        .iter()
        .find_map(|f| f.pointer("/term/uuid.keyword").and_then(Value::as_str))
        .map(str::to_owned);
    let metrics: Option<Vec<String>> = filters.iter().find_map(|f| {
        f.pointer("/terms/metricName.keyword")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
    });
    let state = lock(&state);
    let hits: Vec<Value> = state
        .documents
        .iter()
        .filter(|((i, _), _)| *i == index)
        .filter(|(_, d)| uuid.as_deref().is_none_or(|u| d["uuid"] == u))
        .filter(|(_, d)| {
            metrics
                .as_ref()
                .is_none_or(|m| m.iter().any(|name| d["metricName"] == name.as_str()))
        })
        .map(|((i, id), d)| json!({"_index": i, "_id": id, "_source": d}))
        .collect();
    axum::Json(json!({"hits": {"total": {"value": hits.len()}, "hits": hits}})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn bulk_request(server: &EsTestServer, pairs: &[(&str, &str, Value)]) -> Value {
        let body: String = pairs
            .iter()
            .map(|(index, id, source)| {
                format!(
                    "{}\n{source}\n",
                    json!({"index": {"_index": index, "_id": id}})
                )
            })
            .collect();
        reqwest::Client::new()
            .post(format!("{}/_bulk", server.url))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn put(server: &EsTestServer, path: &str, body: Value) -> u16 {
        reqwest::Client::new()
            .put(format!("{}/{path}", server.url))
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn statuses(response: &Value) -> Vec<u64> {
        response["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|item| item["index"]["status"].as_u64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_conflicting_item_fails_alone_in_the_bulk_item_shape() {
        let server = EsTestServer::start().await.unwrap();
        let response = bulk_request(
            &server,
            &[
                ("i", "a", json!({"resolution": {"vmReadyLatency": 0.001}})),
                ("i", "b", json!({"resolution": 0.5, "P99": 2.0})),
                ("i", "c", json!({"P99": 3.0})),
            ],
        )
        .await;
        assert_eq!(response["errors"], true);
        assert_eq!(statuses(&response), vec![201, 400, 201]);
        let refused = &response["items"][1]["index"];
        assert_eq!(refused["_index"], "i");
        assert_eq!(refused["_id"], "b");
        assert_eq!(refused["error"]["type"], "mapper_parsing_exception");
        assert!(
            refused["error"]["reason"]
                .as_str()
                .unwrap()
                .contains("object mapping for [resolution] tried to parse field [resolution] as object, but found a concrete value")
        );
        assert_eq!(server.document_count(), 2);
        // The refused document mapped nothing; the accepted ones did.
        assert!(server.field_type("i", "P99").is_some());
        let response = bulk_request(&server, &[("i", "d", json!({"P99": "n/a"}))]).await;
        assert_eq!(statuses(&response), vec![400]);
    }

    #[tokio::test]
    async fn the_winning_template_maps_indexes_created_after_it() {
        let server = EsTestServer::start().await.unwrap();
        assert_eq!(put(&server, "early-vm-bgp", json!({})).await, 200);
        let object = json!({"properties": {"resolution": {"type": "object"}}});
        let number = json!({"properties": {"resolution": {"type": "double"}}});
        let template = |patterns: Value, priority: u64, mappings: &Value| {
            json!({"index_patterns": patterns, "priority": priority,
                   "template": {"mappings": mappings}})
        };
        assert_eq!(
            put(
                &server,
                "_index_template/high",
                template(json!(["*-vm-bgp*"]), 200, &object)
            )
            .await,
            200
        );
        assert_eq!(
            put(
                &server,
                "_index_template/low",
                template(json!("*vm-bgp*"), 100, &number)
            )
            .await,
            200
        );
        assert_eq!(
            put(&server, "_index_template/bad", json!({"template": {}})).await,
            400
        );
        assert_eq!(put(&server, "ripsaw-vm-bgp", json!({})).await, 200);
        let doc = json!({"resolution": 0.5});
        let response = bulk_request(
            &server,
            &[
                // Created after the template, by PUT or by its first document: mapped by it.
                ("ripsaw-vm-bgp", "1", doc.clone()),
                ("late-vm-bgp-2", "1", doc.clone()),
                // Created before it, or not matching: dynamic mapping.
                ("early-vm-bgp", "1", doc.clone()),
                ("other", "1", doc.clone()),
            ],
        )
        .await;
        assert_eq!(statuses(&response), vec![400, 400, 201, 201]);
        assert_eq!(
            server.field_type("ripsaw-vm-bgp", "resolution"),
            Some(FieldType::Object {
                enabled: true,
                dynamic: None
            })
        );
        // Mappings in the create-index body come on top of the template's.
        assert_eq!(
            put(&server, "body-vm-bgp", json!({"mappings": number})).await,
            200
        );
        let response = bulk_request(&server, &[("body-vm-bgp", "1", doc)]).await;
        assert_eq!(statuses(&response), vec![201]);
        assert_eq!(
            server
                .field_type("body-vm-bgp", "resolution")
                .map(|t| t.name().to_owned()),
            Some("double".to_owned())
        );
    }
}
