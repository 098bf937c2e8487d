//! One watch per resource kind, selected by label (never a watch or a poll per object). Each event
//! is stamped with the run clock the moment the stream yields it, before any processing, and sent
//! on one channel the run loop consumes.

use std::sync::Arc;

use futures::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::Resource;
use crate::clock::{MonoStamp, RunClock};

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Created or changed (including objects listed at the start or after a re-list).
    Applied,
    Deleted,
}

/// A message from a watch.
#[derive(Debug, Clone)]
pub enum WatchMessage {
    Object {
        at: MonoStamp,
        resource: Resource,
        change: Change,
        object: Arc<DynamicObject>,
    },
    /// A list starts (the initial one, or a re-list after 410 Gone): the objects it delivers until
    /// `Synced` are all there are; any other object of the kind was deleted meanwhile, unseen.
    Relisting { at: MonoStamp, resource: Resource },
    /// The initial list (or a re-list after 410 Gone) is complete.
    Synced { at: MonoStamp, resource: Resource },
    /// The watch failed; the watcher retries with backoff, so this is a note, not the end.
    Error {
        at: MonoStamp,
        resource: Resource,
        error: String,
    },
}

/// Which objects of a kind to watch.
#[derive(Debug, Clone)]
pub struct WatchSpec {
    pub resource: Resource,
    /// A label selector; every kind the harness creates is watched by its run label.
    pub selector: String,
}

/// Starts one watch task per spec; each ends when `cancel` fires or the receiver is gone.
pub fn spawn_watches(
    client: &kube::Client,
    clock: RunClock,
    specs: Vec<WatchSpec>,
    tx: UnboundedSender<WatchMessage>,
    cancel: CancellationToken,
) -> Vec<JoinHandle<()>> {
    specs
        .into_iter()
        .map(|spec| {
            let api: Api<DynamicObject> =
                Api::all_with(client.clone(), &spec.resource.api_resource());
            let tx = tx.clone();
            let cancel = cancel.clone();
            tokio::spawn(async move {
                let config = watcher::Config::default().labels(&spec.selector);
                let mut stream = watcher::watcher(api, config).default_backoff().boxed();
                loop {
                    let next = tokio::select! {
                        _ = cancel.cancelled() => return,
                        next = stream.next() => next,
                    };
                    let Some(item) = next else { return };
                    let at = clock.now();
                    let message = match item {
                        Ok(Event::Apply(object) | Event::InitApply(object)) => {
                            WatchMessage::Object {
                                at,
                                resource: spec.resource,
                                change: Change::Applied,
                                object: Arc::new(object),
                            }
                        }
                        Ok(Event::Delete(object)) => WatchMessage::Object {
                            at,
                            resource: spec.resource,
                            change: Change::Deleted,
                            object: Arc::new(object),
                        },
                        Ok(Event::InitDone) => WatchMessage::Synced {
                            at,
                            resource: spec.resource,
                        },
                        Ok(Event::Init) => WatchMessage::Relisting {
                            at,
                            resource: spec.resource,
                        },
                        Err(e) => WatchMessage::Error {
                            at,
                            resource: spec.resource,
                            error: e.to_string(),
                        },
                    };
                    if tx.send(message).is_err() {
                        // The run loop is gone: the run is shutting down.
                        return;
                    }
                }
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The watches against a scripted API server behind `kube::Client::new`: each request gets the
    //! next scripted answer, and once the script is spent requests never answer (a quiet cluster).
    //! Time is paused, so the watcher's backoff after an error passes without waiting.

    use std::collections::VecDeque;
    use std::convert::Infallible;
    use std::sync::Mutex;
    use std::time::Duration;

    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    use super::*;
    use crate::kube::{IPAM_CLAIM, VIRTUAL_MACHINE};

    const SELECTOR: &str = "vmbgp.io/uuid=u1";

    /// One scripted answer.
    enum Reply {
        /// A whole JSON answer with this status (a list, or an error Status).
        Json(StatusCode, Value),
        /// A watch stream: these events, then the server ends the stream.
        Events(Vec<Value>),
    }

    /// A scripted API server that records the URI of every request it gets.
    #[derive(Clone)]
    struct ScriptedApi {
        replies: Arc<Mutex<VecDeque<Reply>>>,
        requests: Arc<Mutex<Vec<String>>>,
    }

    impl ScriptedApi {
        fn new(replies: Vec<Reply>) -> Self {
            ScriptedApi {
                replies: Arc::new(Mutex::new(replies.into())),
                requests: Arc::new(Mutex::new(Vec::new())),
            }
        }

        fn client(&self) -> kube::Client {
            let api = self.clone();
            let service = tower::service_fn(move |request: Request<Body>| {
                let api = api.clone();
                async move {
                    api.requests
                        .lock()
                        .expect("requests")
                        .push(request.uri().to_string());
                    let reply = api.replies.lock().expect("replies").pop_front();
                    let (status, body) = match reply {
                        Some(Reply::Json(status, value)) => (status, value.to_string()),
                        Some(Reply::Events(events)) => (
                            StatusCode::OK,
                            events.iter().map(|e| format!("{e}\n")).collect(),
                        ),
                        None => return std::future::pending().await,
                    };
                    let response = Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Body::from(body.into_bytes()))
                        .expect("response");
                    Ok::<_, Infallible>(response)
                }
            });
            kube::Client::new(service, "default")
        }

        /// The query parameters of every request so far, in order.
        fn queries(&self) -> Vec<Vec<(String, String)>> {
            self.requests
                .lock()
                .expect("requests")
                .iter()
                .map(|uri| {
                    let url = url::Url::parse(&format!("http://api{uri}")).expect("uri");
                    url.query_pairs()
                        .map(|(k, v)| (k.into_owned(), v.into_owned()))
                        .collect()
                })
                .collect()
        }
    }

    fn vm(name: &str, resource_version: &str) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": resource_version},
        })
    }

    fn list(resource_version: &str, items: Vec<Value>) -> Reply {
        Reply::Json(
            StatusCode::OK,
            json!({
                "apiVersion": "kubevirt.io/v1",
                "kind": "VirtualMachineList",
                "metadata": {"resourceVersion": resource_version},
                "items": items,
            }),
        )
    }

    fn event(kind: &str, object: Value) -> Value {
        json!({"type": kind, "object": object})
    }

    fn status(code: u16, reason: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Status", "status": "Failure",
            "message": format!("scripted {reason}"), "reason": reason, "code": code,
        })
    }

    /// A message as `Relisting`, `Synced`, `Error`, `Applied name@rv` or `Deleted name@rv`.
    fn describe(message: &WatchMessage) -> String {
        match message {
            WatchMessage::Relisting { .. } => "Relisting".into(),
            WatchMessage::Synced { .. } => "Synced".into(),
            WatchMessage::Error { .. } => "Error".into(),
            WatchMessage::Object { change, object, .. } => format!(
                "{change:?} {}@{}",
                object.metadata.name.as_deref().unwrap_or_default(),
                object
                    .metadata
                    .resource_version
                    .as_deref()
                    .unwrap_or_default()
            ),
        }
    }

    fn stamp(message: &WatchMessage) -> MonoStamp {
        match message {
            WatchMessage::Object { at, .. }
            | WatchMessage::Relisting { at, .. }
            | WatchMessage::Synced { at, .. }
            | WatchMessage::Error { at, .. } => *at,
        }
    }

    struct Watching {
        rx: UnboundedReceiver<WatchMessage>,
        /// The stamp of the last message received.
        last: Option<MonoStamp>,
        tasks: Vec<JoinHandle<()>>,
        cancel: CancellationToken,
    }

    fn watch(api: &ScriptedApi, resources: &[Resource]) -> Watching {
        let (tx, rx) = unbounded_channel();
        let cancel = CancellationToken::new();
        let specs = resources
            .iter()
            .map(|&resource| WatchSpec {
                resource,
                selector: SELECTOR.into(),
            })
            .collect();
        let tasks = spawn_watches(&api.client(), RunClock::start(), specs, tx, cancel.clone());
        Watching {
            rx,
            last: None,
            tasks,
            cancel,
        }
    }

    impl Watching {
        /// The next `count` messages, described; each is stamped no earlier than the one before.
        async fn next(&mut self, count: usize) -> Vec<String> {
            let mut seen = Vec::new();
            for _ in 0..count {
                let message = self.rx.recv().await.expect("the watch keeps running");
                let at = stamp(&message);
                assert!(
                    self.last.is_none_or(|last| last <= at),
                    "stamped out of order"
                );
                self.last = Some(at);
                seen.push(describe(&message));
            }
            seen
        }

        /// Asserts that nothing more comes while the cluster is quiet (an hour of paused time).
        async fn assert_quiet(&mut self) {
            let more = tokio::time::timeout(Duration::from_secs(3600), self.rx.recv()).await;
            assert!(
                more.is_err(),
                "unexpected message {:?}",
                more.ok().flatten().as_ref().map(describe)
            );
        }
    }

    fn param<'a>(query: &'a [(String, String)], key: &str) -> Option<&'a str> {
        query
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    #[tokio::test(start_paused = true)]
    async fn initial_list_then_events_in_order() {
        let api = ScriptedApi::new(vec![
            list("2", vec![vm("a", "1"), vm("b", "2")]),
            Reply::Events(vec![
                event("ADDED", vm("c", "3")),
                event("MODIFIED", vm("a", "4")),
                event("DELETED", vm("b", "5")),
            ]),
        ]);
        let mut watching = watch(&api, &[VIRTUAL_MACHINE]);
        assert_eq!(
            watching.next(7).await,
            [
                "Relisting",
                "Applied a@1",
                "Applied b@2",
                "Synced",
                "Applied c@3",
                "Applied a@4",
                "Deleted b@5"
            ]
        );
        watching.assert_quiet().await;

        let requests = api.requests.lock().expect("requests").clone();
        assert!(
            requests
                .iter()
                .all(|uri| uri.starts_with("/apis/kubevirt.io/v1/virtualmachines?")),
            "one watch of the kind in every namespace: {requests:?}"
        );
        let queries = api.queries();
        assert!(
            queries
                .iter()
                .all(|q| param(q, "labelSelector") == Some(SELECTOR)),
            "every request is selected by the run label: {queries:?}"
        );
        assert_eq!(param(&queries[0], "watch"), None, "first a list");
        assert_eq!(param(&queries[1], "watch"), Some("true"));
        assert_eq!(
            param(&queries[1], "resourceVersion"),
            Some("2"),
            "the watch starts where the list ended"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_stream_resumes_without_losing_or_repeating_events() {
        let api = ScriptedApi::new(vec![
            list("1", vec![]),
            Reply::Events(vec![event("ADDED", vm("a", "2"))]),
            Reply::Events(vec![
                event("MODIFIED", vm("a", "3")),
                event("ADDED", vm("b", "4")),
            ]),
            Reply::Events(vec![event("DELETED", vm("a", "5"))]),
        ]);
        let mut watching = watch(&api, &[VIRTUAL_MACHINE]);
        assert_eq!(
            watching.next(6).await,
            [
                "Relisting",
                "Synced",
                "Applied a@2",
                "Applied a@3",
                "Applied b@4",
                "Deleted a@5"
            ]
        );
        watching.assert_quiet().await;
        let queries = api.queries();
        let resumed_from: Vec<Option<&str>> = queries
            .iter()
            .skip(1)
            .map(|q| param(q, "resourceVersion"))
            .collect();
        assert_eq!(
            resumed_from,
            [Some("1"), Some("2"), Some("4"), Some("5")],
            "each stream resumes from the last event seen, without a re-list"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_resource_version_relists() {
        let api = ScriptedApi::new(vec![
            list("1", vec![vm("a", "1")]),
            Reply::Events(vec![event("ERROR", status(410, "Expired"))]),
            list("7", vec![vm("a", "6"), vm("c", "7")]),
            Reply::Events(vec![event("ADDED", vm("d", "8"))]),
        ]);
        let mut watching = watch(&api, &[VIRTUAL_MACHINE]);
        assert_eq!(
            watching.next(9).await,
            [
                "Relisting",
                "Applied a@1",
                "Synced",
                "Error",
                "Relisting",
                "Applied a@6",
                "Applied c@7",
                "Synced",
                "Applied d@8"
            ]
        );
        watching.assert_quiet().await;
        let queries = api.queries();
        assert_eq!(
            param(&queries[2], "watch"),
            None,
            "410 Gone is answered with a new list"
        );
        assert_eq!(param(&queries[3], "resourceVersion"), Some("7"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_request_is_a_note_and_the_watch_goes_on() {
        let api = ScriptedApi::new(vec![
            Reply::Json(
                StatusCode::INTERNAL_SERVER_ERROR,
                status(500, "InternalError"),
            ),
            list("1", vec![vm("a", "1")]),
        ]);
        let mut watching = watch(&api, &[VIRTUAL_MACHINE]);
        assert_eq!(
            watching.next(4).await,
            ["Relisting", "Error", "Relisting", "Applied a@1"]
        );
        assert_eq!(watching.next(1).await, ["Synced"]);
        watching.assert_quiet().await;
    }

    #[tokio::test(start_paused = true)]
    async fn each_kind_has_its_own_watch_and_tags_its_messages() {
        let api = ScriptedApi::new(vec![list("1", vec![]), list("1", vec![])]);
        let mut watching = watch(&api, &[VIRTUAL_MACHINE, IPAM_CLAIM]);
        let mut synced = Vec::new();
        while synced.len() < 2 {
            let message = watching.rx.recv().await.expect("running");
            if let WatchMessage::Synced { resource, .. } = message {
                synced.push(resource.kind);
            }
        }
        synced.sort_unstable();
        assert_eq!(synced, ["IPAMClaim", "VirtualMachine"]);
        watching.assert_quiet().await;
        assert_eq!(watching.tasks.len(), 2);
        let mut paths: Vec<String> = api
            .requests
            .lock()
            .expect("requests")
            .iter()
            .map(|uri| uri.split('?').next().unwrap_or_default().to_string())
            .collect();
        paths.sort();
        paths.dedup();
        assert_eq!(
            paths,
            [
                "/apis/k8s.cni.cncf.io/v1alpha1/ipamclaims",
                "/apis/kubevirt.io/v1/virtualmachines"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_ends_every_watch() {
        let api = ScriptedApi::new(vec![list("1", vec![])]);
        let mut watching = watch(&api, &[VIRTUAL_MACHINE, IPAM_CLAIM]);
        assert_eq!(watching.next(1).await, ["Relisting"]);
        watching.cancel.cancel();
        for task in watching.tasks.drain(..) {
            task.await.expect("the watch task ends cleanly");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_ends_when_the_run_loop_is_gone() {
        let api = ScriptedApi::new(vec![
            list("1", vec![]),
            Reply::Events(vec![event("ADDED", vm("a", "2"))]),
        ]);
        let Watching { rx, mut tasks, .. } = watch(&api, &[VIRTUAL_MACHINE]);
        drop(rx);
        tasks
            .pop()
            .expect("one task")
            .await
            .expect("the watch task ends cleanly");
    }
}
