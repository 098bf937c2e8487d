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
