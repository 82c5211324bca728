//! Many writes with watches open: per-write cost must not grow with the store.

mod common;

use common::*;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use kube::core::DynamicObject;
use serde_json::json;
use std::time::Instant;

// The full-size run (10,000 of each) is the benchmark's job; this keeps the test bounded.
const N: usize = 2_000;
const CONCURRENCY: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_secrets_and_custom_objects_with_watches() {
    let k = with_widgets().await;
    let client = k.client().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let widgets = widget_api(&client, "default");

    let counter =
        |mut s: futures::stream::BoxStream<'static, kube::Result<WatchEvent<DynamicObject>>>| {
            tokio::spawn(async move {
                let mut added = 0;
                while added < N {
                    match s.try_next().await {
                        Ok(Some(WatchEvent::Added(_))) => added += 1,
                        Ok(Some(_)) => {}
                        _ => break,
                    }
                }
                added
            })
        };
    let raw_secrets: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &kube::discovery::ApiResource::erase::<Secret>(&()),
    );
    let s1 = raw_secrets
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    let w1 = widgets
        .watch(&WatchParams::default().timeout(60), "0")
        .await
        .unwrap()
        .boxed();
    let secret_watch = counter(s1);
    let widget_watch = counter(w1);

    let start = Instant::now();
    within(60, async {
        futures::stream::iter(0..N)
            .map(|i| {
                let secrets = secrets.clone();
                let widgets = widgets.clone();
                async move {
                    let s: Secret = serde_json::from_value(json!({
                        "metadata": {"name": format!("s-{i}"), "labels": {"batch": (i % 10).to_string()}},
                        "stringData": {"password": format!("p{i}")},
                    }))
                    .unwrap();
                    secrets.create(&PostParams::default(), &s).await.unwrap();
                    widgets.create(&PostParams::default(), &widget(&format!("w-{i}"), 1 + (i as i64 % 5))).await.unwrap();
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect::<Vec<_>>()
            .await;
    })
    .await;
    let elapsed = start.elapsed();
    assert_eq!(within(30, secret_watch).await.unwrap(), N);
    assert_eq!(within(30, widget_watch).await.unwrap(), N);
    assert_eq!(k.object_count("secrets"), N);
    assert_eq!(k.object_count("widgets"), N);
    eprintln!("{} creates in {elapsed:?}", 2 * N);
}
