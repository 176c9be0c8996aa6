//! Many instances of one service: how they count each other, and a rate limit
//! kept global (`FUNNELFLOW_RATE_LIMIT_SCOPE=global`) by sharing it.

use std::sync::atomic::Ordering;

use funnelflow::domain::instances::Presence;

use crate::app::{TestApp, problem, spawn_instance_of};

async fn instances_count_each_other_and_leave(app: TestApp) {
    let store = app.state.store.clone();
    let a = Presence::new(store.clone());
    let b = Presence::new(store.clone());
    assert_ne!(a.id(), b.id());
    assert_eq!(a.beat().await.unwrap(), 1);
    assert_eq!(b.beat().await.unwrap(), 2);
    assert_eq!(a.beat().await.unwrap(), 2, "beating again does not count twice");
    assert_eq!(a.live().load(Ordering::Relaxed), 2);
    b.leave().await.unwrap();
    assert_eq!(a.beat().await.unwrap(), 1);
}
crate::both_backends!(instances_count_each_other_and_leave);

async fn a_global_rate_limit_is_shared_by_the_instances(first: TestApp) {
    const ENV: [(&str, &str); 2] = [
        ("FUNNELFLOW_RATE_LIMIT", "10/60s"),
        ("FUNNELFLOW_RATE_LIMIT_SCOPE", "global"),
    ];
    // `first` counts per instance; these two share the quota.
    let a = spawn_instance_of(&first, &ENV).await;
    let b = spawn_instance_of(&first, &ENV).await;
    // Beat now rather than wait for their heartbeats, so each has seen the other.
    a.state.presence.beat().await.unwrap();
    b.state.presence.beat().await.unwrap();
    assert_eq!(a.state.presence.beat().await.unwrap(), 2);
    assert_eq!(b.state.presence.live().load(Ordering::Relaxed), 2);
    let token = a.token("shared-quota");
    let mut allowed = 0;
    for round in 0..6 {
        for app in [&a, &b] {
            let res = app.get("/v1/me", &token).await;
            if res.status() == 429 {
                assert_eq!(round, 5, "each instance allows ceil(10 / 2) = 5");
                problem(res, 429, "rate_limited").await;
                continue;
            }
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["ratelimit-policy"], "\"default\";q=10;w=60");
            if round == 0 {
                assert!(
                    res.headers()["ratelimit"]
                        .to_str()
                        .unwrap()
                        .starts_with("\"default\";r=8;t="),
                    "4 left here, estimated for 2 instances"
                );
            }
            allowed += 1;
        }
    }
    assert_eq!(allowed, 10, "the instances together allow the configured quota");
    // An instance counting only itself would have allowed 6 more here.
    assert_eq!(first.get("/v1/me", &token).await.status(), 200);
}
crate::both_backends!(a_global_rate_limit_is_shared_by_the_instances);
