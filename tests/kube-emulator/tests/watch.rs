//! List and watch: resourceVersions, kube_runtime watchers, bookmarks, 410 Gone,
//! selectors and paging.

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent, Secret};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube_emulator::KubeEmulatorConfig;
use serde_json::json;
use std::collections::BTreeSet;
use std::time::Duration;

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap()
}

#[tokio::test]
async fn watcher_lists_then_streams_and_resumes() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut seen = BTreeSet::new();
    within(10, async {
        loop {
            match stream.try_next().await.unwrap().unwrap() {
                Event::InitApply(o) => {
                    seen.insert(o.metadata.name.unwrap());
                }
                Event::InitDone => break,
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(seen, BTreeSet::from(["before".to_string()]));

    api.create(&PostParams::default(), &cm("live", json!({})))
        .await
        .unwrap();
    let name = within(10, async {
        loop {
            if let Event::Apply(o) = stream.try_next().await.unwrap().unwrap() {
                return o.metadata.name.unwrap();
            }
        }
    })
    .await;
    assert_eq!(name, "live");

    // Closed streams are resumed from the last version without a relist.
    k.drop_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    api.create(&PostParams::default(), &cm("after-drop", json!({})))
        .await
        .unwrap();
    let ev = within(10, async {
        loop {
            match stream.try_next().await.unwrap().unwrap() {
                Event::Apply(o) => return ("apply", o.metadata.name.unwrap()),
                Event::Init => return ("relist", String::new()),
                _ => {}
            }
        }
    })
    .await;
    assert_eq!(ev, ("apply", "after-drop".to_string()));
}

#[tokio::test]
async fn compacted_history_gives_410_and_relist() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    api.create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    k.compact();

    // A raw watch from the old version gets an ERROR event with a 410 Status.
    let mut s = api
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match within(10, s.try_next()).await.unwrap().unwrap() {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
            assert!(
                e.message.starts_with("too old resource version: "),
                "{}",
                e.message
            );
        }
        other => panic!("expected a 410 error event, got {other:?}"),
    }

    // kube_runtime's watcher relists after the 410.
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    within(10, async {
        loop {
            if let Event::InitDone = stream.try_next().await.unwrap().unwrap() {
                break;
            }
        }
    })
    .await;
    k.compact();
    k.drop_watches();
    api.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    let (saw_410, relisted) = within(15, async {
        let mut names = BTreeSet::new();
        let mut in_init = false;
        let mut saw_410 = false;
        loop {
            match stream.next().await.unwrap() {
                // The watcher reports the 410 and then relists.
                Err(watcher::Error::WatchError(s)) if s.code == 410 => saw_410 = true,
                Err(e) => panic!("unexpected watcher error {e}"),
                Ok(Event::Init) => in_init = true,
                Ok(Event::InitApply(o)) if in_init => {
                    names.insert(o.metadata.name.unwrap());
                }
                Ok(Event::InitDone) if in_init => return (saw_410, names),
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(saw_410);
    assert_eq!(
        relisted,
        BTreeSet::from(["a".into(), "b".into(), "c".into()])
    );
}

#[tokio::test]
async fn bookmarks_and_timeouts() {
    let k = start_with(KubeEmulatorConfig {
        bookmark_interval: Duration::from_millis(200),
        ..Default::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut s = api
        .watch(
            &WatchParams {
                bookmarks: true,
                ..WatchParams::default()
            }
            .timeout(2),
            &rv,
        )
        .await
        .unwrap()
        .boxed();
    match within(5, s.try_next()).await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => {
            assert!(b.metadata.resource_version.parse::<u64>().unwrap() >= rv.parse().unwrap())
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    // timeoutSeconds ends the stream.
    within(5, async { while s.try_next().await.unwrap().is_some() {} }).await;
}

#[tokio::test]
async fn label_and_field_selectors_on_list_and_watch() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    for (n, l) in [
        ("a", json!({"app": "x", "tier": "web"})),
        ("b", json!({"app": "y"})),
        ("c", json!({"tier": "db"})),
    ] {
        api.create(&PostParams::default(), &cm(n, l)).await.unwrap();
    }
    let names = |sel: &str| {
        let api = api.clone();
        let sel = sel.to_string();
        async move {
            api.list(&ListParams::default().labels(&sel))
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|c| c.metadata.name.unwrap())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names("app=x").await, ["a"]);
    assert_eq!(names("app==y").await, ["b"]);
    assert_eq!(names("app!=x").await, ["b", "c"]);
    assert_eq!(names("app in (x,y)").await, ["a", "b"]);
    assert_eq!(names("app notin (x)").await, ["b", "c"]);
    assert_eq!(names("tier").await, ["a", "c"]);
    assert_eq!(names("!app").await, ["c"]);
    assert_eq!(names("app,tier=web").await, ["a"]);
    let err = api_error(
        api.list(&ListParams::default().labels("app in x"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);

    let by_name = api
        .list(&ListParams::default().fields("metadata.name=b"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let err = api_error(
        api.list(&ListParams::default().fields("spec.nope=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 400);
    assert!(
        err.message.contains("field label not supported"),
        "{}",
        err.message
    );

    // Secrets select by type; events by involvedObject.
    let secrets: Api<Secret> = Api::namespaced(k.client().await, "default");
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let s: Secret = serde_json::from_value(json!({"metadata": {"name": "opaque"}})).unwrap();
    secrets.create(&PostParams::default(), &s).await.unwrap();
    let tls = secrets
        .list(&ListParams::default().fields("type=kubernetes.io/tls"))
        .await
        .unwrap();
    assert_eq!(tls.items.len(), 1);
    let events: Api<CoreEvent> = Api::namespaced(k.client().await, "default");
    let ev: CoreEvent = serde_json::from_value(json!({
        "metadata": {"name": "e1"}, "reason": "Synced", "type": "Normal", "message": "ok",
        "involvedObject": {"kind": "ConfigMap", "name": "a", "namespace": "default"},
    }))
    .unwrap();
    events.create(&PostParams::default(), &ev).await.unwrap();
    let found = events
        .list(
            &ListParams::default()
                .fields("involvedObject.name=a,involvedObject.kind=ConfigMap,reason=Synced"),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);

    // A watch with a selector sees objects entering and leaving it.
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut s = api
        .watch(&WatchParams::default().labels("app=x").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    api.patch(
        "b",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"app": "x"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "a",
        &Default::default(),
        &kube::api::Patch::Merge(json!({"metadata": {"labels": {"app": "z"}}})),
    )
    .await
    .unwrap();
    match within(5, s.try_next()).await.unwrap().unwrap() {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("{other:?}"),
    }
    match within(5, s.try_next()).await.unwrap().unwrap() {
        WatchEvent::Deleted(o) => assert_eq!(o.metadata.name.as_deref(), Some("a")),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn paging_is_consistent() {
    let k = start().await;
    let api: Api<ConfigMap> = Api::namespaced(k.client().await, "default");
    for i in 0..25 {
        api.create(&PostParams::default(), &cm(&format!("p{i:02}"), json!({})))
            .await
            .unwrap();
    }
    let first = api.list(&ListParams::default().limit(10)).await.unwrap();
    assert_eq!(first.items.len(), 10);
    assert_eq!(first.metadata.remaining_item_count, Some(15));
    let token = first.metadata.continue_.clone().unwrap();
    // Writes after the first page do not show up in later pages.
    api.create(&PostParams::default(), &cm("p99", json!({})))
        .await
        .unwrap();
    let mut all: Vec<String> = first
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap())
        .collect();
    let mut cont = Some(token);
    while let Some(c) = cont {
        let page = api
            .list(&ListParams::default().limit(10).continue_token(&c))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version,
            first.metadata.resource_version
        );
        all.extend(page.items.into_iter().map(|c| c.metadata.name.unwrap()));
        cont = page.metadata.continue_;
    }
    assert_eq!(all.len(), 25);

    // After compaction an old continue token is refused with 410.
    let page = api.list(&ListParams::default().limit(5)).await.unwrap();
    k.compact();
    let err = api_error(
        api.list(
            &ListParams::default()
                .limit(5)
                .continue_token(page.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(err.code, 410);
    assert_eq!(err.reason, "Expired");
    assert!(!all.contains(&"p99".to_string()));
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted);
}

#[tokio::test]
async fn all_namespace_watch_and_metadata_watcher() {
    let k = start().await;
    let client = k.client().await;
    let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
    )
    .await
    .unwrap();
    // Metadata-only requests (Accept: ...;as=PartialObjectMetadataList).
    let all: Api<PartialObjectMeta<Secret>> = Api::all(client.clone());
    let mut names = watcher(all, watcher::Config::default())
        .applied_objects()
        .boxed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    for ns in ["default", "other"] {
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": format!("s-{ns}")}})).unwrap(),
        )
        .await
        .unwrap();
    }
    let got = within(10, async {
        let mut got = BTreeSet::new();
        while got.len() < 2 {
            let m = names.try_next().await.unwrap().unwrap();
            got.insert(format!(
                "{}/{}",
                m.metadata.namespace.unwrap(),
                m.metadata.name.unwrap()
            ));
        }
        got
    })
    .await;
    assert_eq!(
        got,
        BTreeSet::from(["default/s-default".into(), "other/s-other".into()])
    );
}
