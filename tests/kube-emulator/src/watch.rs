//! Watch streams: initial state or history replay, live fan-out from the
//! broadcast channel, selector transitions, bookmarks, timeouts and 410 Gone.

use crate::output::{Format, at_version, render_one};
use crate::registry::ResourceDef;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::Shared;
use crate::status::ApiError;
use crate::store::{EventType, WatchStart};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};

pub struct WatchParams {
    pub from: Option<u64>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub format: Format,
}

fn line(type_: &str, object: Value) -> Bytes {
    line_ref(type_, &object)
}

/// One newline-delimited watch event, serialized without copying the object.
fn line_ref(type_: &str, object: &Value) -> Bytes {
    let mut v = Vec::with_capacity(256);
    v.extend_from_slice(b"{\"type\":\"");
    v.extend_from_slice(type_.as_bytes());
    v.extend_from_slice(b"\",\"object\":");
    let _ = serde_json::to_writer(&mut v, object);
    v.extend_from_slice(b"}\n");
    Bytes::from(v)
}

fn render_line(def: &ResourceDef, version: &str, fmt: Format, type_: &str, o: &Value) -> Bytes {
    match fmt {
        Format::Json => line_ref(type_, &at_version(def, version, o)),
        _ => line(type_, render_one(def, version, o, fmt)),
    }
}

fn bookmark(def: &ResourceDef, version: &str, fmt: Format, rv: u64, initial_end: bool) -> Bytes {
    let (kind, api_version) = match fmt {
        Format::Meta => (
            "PartialObjectMetadata".to_string(),
            "meta.k8s.io/v1".to_string(),
        ),
        _ => (def.kind.clone(), def.api_version(version)),
    };
    let mut md = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        md["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    line(
        "BOOKMARK",
        json!({"kind": kind, "apiVersion": api_version, "metadata": md}),
    )
}

pub fn start(
    shared: Arc<Shared>,
    def: Arc<ResourceDef>,
    version: String,
    namespace: Option<String>,
    p: WatchParams,
) -> Response {
    let (tx, rx) = mpsc::channel::<Bytes>(256);
    let mut drop_rx = shared.drop_tx.subscribe();
    let started = shared.store.watch(
        &def.id(),
        namespace.as_deref(),
        if p.send_initial_events { None } else { p.from },
    );
    tokio::spawn(async move {
        let (start, mut events, start_rv) = match started {
            Ok(s) => s,
            Err(compacted) => {
                let e = ApiError::gone(format!(
                    "too old resource version: {} ({})",
                    p.from.unwrap_or(0),
                    compacted + 1
                ));
                let _ = tx.send(line("ERROR", e.to_status())).await;
                return;
            }
        };
        let matches = |o: &Value| {
            let v = at_version(&def, &version, o);
            p.labels.matches(&v) && p.fields.matches(&v)
        };
        let render = |t: &str, o: &Value| render_line(&def, &version, p.format, t, o);
        let mut last_rv = start_rv;
        match start {
            WatchStart::Initial(items) => {
                for o in items.iter().filter(|o| matches(o)) {
                    if tx.send(render("ADDED", o)).await.is_err() {
                        return;
                    }
                }
                if p.send_initial_events && p.bookmarks {
                    let _ = tx
                        .send(bookmark(&def, &version, p.format, start_rv, true))
                        .await;
                }
            }
            WatchStart::Replay(evs) => {
                for ev in evs {
                    if let Some(b) = event_line(&ev, &matches, &render)
                        && tx.send(b).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
        let deadline = tokio::time::sleep(p.timeout);
        tokio::pin!(deadline);
        let mut tick = tokio::time::interval(shared.bookmark_interval);
        tick.tick().await;
        let id = def.id();
        loop {
            tokio::select! {
                r = events.recv() => match r {
                    Ok(ev) => {
                        if ev.rv <= last_rv {
                            continue;
                        }
                        last_rv = ev.rv;
                        if ev.resource != id || namespace.as_ref().is_some_and(|ns| *ns != ev.namespace) {
                            continue;
                        }
                        if let Some(b) = event_line(&ev, &matches, &render)
                            && tx.send(b).await.is_err()
                        {
                            return;
                        }
                    }
                    // A lagging watcher is closed; the client resumes from its last version.
                    Err(broadcast::error::RecvError::Lagged(_)) | Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick(), if p.bookmarks => {
                    if tx.send(bookmark(&def, &version, p.format, last_rv, false)).await.is_err() {
                        return;
                    }
                }
                _ = &mut deadline => return,
                _ = drop_rx.changed() => return,
                _ = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<Bytes, std::io::Error>(b), rx))
    });
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache, private")
        .body(Body::from_stream(stream))
        .expect("static response parts are valid")
}

fn event_line(
    ev: &crate::store::WatchEvent,
    matches: &dyn Fn(&Value) -> bool,
    render: &dyn Fn(&str, &Value) -> Bytes,
) -> Option<Bytes> {
    let new_m = matches(&ev.object);
    let old_m = ev.old.as_deref().is_some_and(matches);
    let t = match ev.type_ {
        EventType::Added => new_m.then_some("ADDED"),
        EventType::Deleted => old_m.then_some("DELETED"),
        EventType::Modified => match (old_m, new_m) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }?;
    Some(render(t, &ev.object))
}
