//! Watch streams: selector-aware event encoding, bookmarks, in-stream 410s and the fault-injected cuts.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::ServerState;
use super::request::{Query, ReadAt, Target, list_options};
use crate::error::{ApiError, TOO_LARGE_RV_WAIT};
use crate::object_version::line_around;
use crate::registry::ResourceKind;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{WatchEvent, event_line};
use crate::table::{Printers, TableOptions};

fn bookmark(kind: &ResourceKind, rv: u64, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    event_line(
        "BOOKMARK",
        &json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": meta}),
    )
}

fn gone_line(message: &str) -> Bytes {
    event_line(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Expired", "code": 410}),
    )
}

/// The event type a watcher with selectors sees for `ev`, if it sees it: MODIFIED becomes ADDED/DELETED when the
/// object enters or leaves the selection, as on a real server.
fn visible_type(
    ev: &WatchEvent,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<&'static str> {
    if let Some(ns) = ns
        && ev.meta.namespace != ns
    {
        return None;
    }
    let own = ev.event_type.as_str();
    if labels.is_everything() && fields.terms.is_empty() {
        return Some(own);
    }
    let now = labels.matches_with(|k| ev.meta.labels.get(k)) && fields.matches_meta(&ev.meta);
    match ev.event_type {
        crate::store::EventType::Modified => {
            let before = ev.previous.as_ref().is_some_and(|m| {
                labels.matches_with(|k| m.labels.get(k)) && fields.matches_meta(&ev.meta)
            });
            match (before, now) {
                (true, true) => Some(own),
                (false, true) => Some("ADDED"),
                (true, false) => Some("DELETED"),
                (false, false) => None,
            }
        }
        _ => now.then_some(own),
    }
}

/// How one watch stream encodes its events.
struct Encoder<'a> {
    ns: Option<&'a str>,
    labels: &'a LabelSelector,
    fields: &'a FieldSelector,
    /// A Table watch (kubectl get -w): each object becomes a one-row Table, with column definitions only in the
    /// first event, as kube-apiserver sends them.
    table: Option<(TableOptions, &'a Printers)>,
    headers_sent: bool,
}

impl Encoder<'_> {
    fn render(&mut self, ev: &WatchEvent) -> Option<Bytes> {
        let event_type = visible_type(ev, self.ns, self.labels, self.fields)?;
        if let Some((opts, printers)) = self.table {
            let table = printers.object(ev.kind, &ev.object(), opts, !self.headers_sent);
            self.headers_sent = true;
            return Some(event_line(event_type, &table));
        }
        if event_type == ev.event_type.as_str() {
            Some(ev.line())
        } else {
            Some(line_around(event_type, &ev.json))
        }
    }
}

pub(super) fn watch_response(
    st: &Arc<ServerState>,
    kind: &ResourceKind,
    t: &Target,
    q: &Query,
    table: Option<TableOptions>,
    read: ReadAt,
) -> Result<Response, ApiError> {
    let opts = list_options(q)?;
    let send_initial = q.flag("sendInitialEvents");
    let (from_rv, initial_at) = match read {
        ReadAt::NotOlderThan(rv) | ReadAt::Exact(rv) if send_initial => (None, Some(rv)),
        ReadAt::NotOlderThan(rv) | ReadAt::Exact(rv) => (Some(rv), None),
        ReadAt::Latest | ReadAt::Any => (None, None),
    };
    // A watch-list's initial state must be at least `initial_at`: if the lab is not there yet the subscription is
    // taken in the stream after the watch cache's wait.
    let wait_for = initial_at.filter(|rv| *rv > st.store.resource_version());
    let bookmarks = q.flag("allowWatchBookmarks");
    let faults = st.faults.config();
    let mut timeout = match q.get("timeoutSeconds").and_then(|s| s.parse::<u64>().ok()) {
        Some(s) => Duration::from_secs(s),
        None => Duration::from_secs(1800),
    };
    if let Some(cut) = faults.watch_cut_every {
        timeout = timeout.min(cut);
    }
    let sub = if faults.gone_on_resume && from_rv.is_some() {
        Some(Err(ApiError::Gone {
            message: "too old resource version (injected fault)".to_string(),
        }))
    } else if wait_for.is_some() {
        None
    } else {
        Some(st.store.watch(t.kind, t.namespace.as_deref(), from_rv))
    };
    let kind = kind.clone();
    let ns = t.namespace.clone();
    let store = st.store.clone();
    let shutdown = st.shutdown.clone();
    let mut cut = st.faults.cut_signal();
    let bookmark_every = st.bookmark_interval;
    let kind_id = t.kind;
    let state = st.clone();
    let stream = async_stream::stream! {
        let mut encoder = Encoder {
            ns: ns.as_deref(),
            labels: &opts.label_selector,
            fields: &opts.field_selector,
            table: table.map(|o| (o, state.printers())),
            headers_sent: false,
        };
        let sub = match (sub, wait_for) {
            (Some(sub), _) => sub,
            (None, Some(rv)) => {
                if !store.wait_for_rv(rv, TOO_LARGE_RV_WAIT).await {
                    // Past the watch cache's wait the watch-list ends with an in-stream 504.
                    let err = ApiError::TooLargeResourceVersion { requested: rv, current: store.resource_version() };
                    yield Ok::<Bytes, Infallible>(event_line("ERROR", &err.to_status()));
                    return;
                }
                store.watch(kind_id, ns.as_deref(), None)
            }
            (None, None) => store.watch(kind_id, ns.as_deref(), None),
        };
        let mut sub = match sub {
            Ok(s) => s,
            Err(e) => {
                yield Ok::<Bytes, Infallible>(gone_line(&e.to_string()));
                return;
            }
        };
        let mut last_rv = from_rv.unwrap_or(0);
        for ev in std::mem::take(&mut sub.initial) {
            last_rv = last_rv.max(ev.rv);
            if let Some(line) = encoder.render(&ev) {
                yield Ok(line);
            }
        }
        last_rv = last_rv.max(sub.start_rv);
        if send_initial && bookmarks {
            yield Ok(bookmark(&kind, sub.start_rv, true));
        }
        let deadline = tokio::time::sleep(timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                _ = shutdown.cancelled() => break,
                _ = cut.changed() => break,
                _ = ticker.tick(), if bookmarks => {
                    // Every event with rv <= `progress` is already in our receiver: drain it, then promise `progress`.
                    let progress = store.resource_version();
                    let mut lagged = false;
                    loop {
                        match sub.receiver.try_recv() {
                            Ok(ev) => {
                                if ev.rv > last_rv {
                                    last_rv = ev.rv;
                                    if let Some(line) = encoder.render(&ev) {
                                        yield Ok(line);
                                    }
                                }
                            }
                            Err(TryRecvError::Empty) => break,
                            Err(_) => { lagged = true; break; }
                        }
                    }
                    if lagged { break; }
                    last_rv = last_rv.max(progress);
                    yield Ok(bookmark(&kind, last_rv, false));
                }
                r = sub.receiver.recv() => match r {
                    Ok(ev) => {
                        if ev.kind == kind_id && ev.rv > last_rv {
                            last_rv = ev.rv;
                            if let Some(line) = encoder.render(&ev) {
                                yield Ok(line);
                            }
                        }
                    }
                    // A watcher that fell behind is closed, like a real server does; it resumes from its last rv.
                    Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => break,
                }
            }
        }
    };
    let content_type = table.map_or("application/json", |o| o.version.content_type());
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        Body::from_stream(stream),
    )
        .into_response())
}
