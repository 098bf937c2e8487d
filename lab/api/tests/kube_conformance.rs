//! Conformance of the lab API server with kube-rs: CRUD through `Api<DynamicObject>`, discovery, errors as
//! `Status`, pagination, patches, status subresource, finalizers, and `kube::runtime::watcher` surviving a
//! forced 410 and cut streams.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{
    Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher;
use serde_json::{Value, json};
use vmbgp_lab_api::{FaultConfig, LabConfig};

fn vm(name: &str, labels: Value) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name, "labels": labels},
        "spec": {"runStrategy": "Halted", "template": {"spec": {"domain": {"devices": {}}}}},
    }))
    .expect("vm object")
}

fn api_code(e: &kube::Error) -> Option<u16> {
    match e {
        kube::Error::Api(s) => Some(s.code),
        _ => None,
    }
}

#[tokio::test]
async fn dynamic_crud_errors_pagination_and_patches() {
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let info = client.apiserver_version().await.expect("version");
    assert_eq!(info.major, "1");
    let vms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &common::vm_resource());

    let created = vms
        .create(&PostParams::default(), &vm("vm-a", json!({"app": "x"})))
        .await
        .expect("create");
    assert!(created.metadata.resource_version.is_some());
    assert!(created.metadata.uid.is_some());
    let dup = vms
        .create(&PostParams::default(), &vm("vm-a", json!({})))
        .await
        .expect_err("must fail");
    assert_eq!(api_code(&dup), Some(409));
    let missing = vms.get("nope").await.expect_err("must fail");
    assert_eq!(api_code(&missing), Some(404));
    assert!(vms.get_opt("nope").await.expect("get_opt").is_none());

    for i in 0..7 {
        vms.create(
            &PostParams::default(),
            &vm(
                &format!("page-{i}"),
                json!({"page": "yes", "idx": i.to_string()}),
            ),
        )
        .await
        .expect("create page");
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().labels("page=yes").limit(3);
    let mut pages = 0;
    loop {
        let page = vms.list(&lp).await.expect("list page");
        pages += 1;
        names.extend(page.items.iter().filter_map(|o| o.metadata.name.clone()));
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => lp = lp.continue_token(&c),
            _ => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(names.len(), 7);
    let set: BTreeSet<_> = vms
        .list(&ListParams::default().labels("idx in (1,2),page"))
        .await
        .expect("set list")
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(
        set,
        BTreeSet::from(["page-1".to_string(), "page-2".to_string()])
    );
    let by_field = vms
        .list(&ListParams::default().fields("metadata.name=vm-a"))
        .await
        .expect("field list");
    assert_eq!(by_field.items.len(), 1);
    let not_x = vms
        .list(&ListParams::default().labels("app!=x"))
        .await
        .expect("neq list");
    assert_eq!(not_x.items.len(), 7);

    // Update with a stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale.data["spec"]["runStrategy"] = json!("Manual");
    vms.replace("vm-a", &PostParams::default(), &stale)
        .await
        .expect("first replace");
    let conflict = vms
        .replace("vm-a", &PostParams::default(), &stale)
        .await
        .expect_err("must fail");
    assert_eq!(api_code(&conflict), Some(409));

    let merged = vms
        .patch(
            "vm-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"m": "1"}}})),
        )
        .await
        .expect("merge");
    assert_eq!(
        merged
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("m"))
            .map(String::as_str),
        Some("1")
    );
    let jp: json_patch::Patch = serde_json::from_value(
        json!([{"op": "replace", "path": "/spec/runStrategy", "value": "Halted"}]),
    )
    .expect("json patch");
    let jpatched = vms
        .patch("vm-a", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .expect("json patch");
    assert_eq!(jpatched.data["spec"]["runStrategy"], "Halted");
    let applied = vms
        .patch(
            "vm-ssa",
            &PatchParams::apply("vmbgp-test").force(),
            &Patch::Apply(vm("vm-ssa", json!({"ssa": "1"}))),
        )
        .await
        .expect("apply creates");
    assert_eq!(applied.metadata.name.as_deref(), Some("vm-ssa"));
    let status = vms
        .patch_status(
            "vm-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"printableStatus": "Stopped"}})),
        )
        .await
        .expect("status");
    assert_eq!(status.data["status"]["printableStatus"], "Stopped");
    let gen_before = status.metadata.generation;
    let again = vms
        .patch(
            "vm-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"printableStatus": "Running"}})),
        )
        .await
        .expect("main patch");
    assert_eq!(
        again.data["status"]["printableStatus"], "Stopped",
        "status changes through the main resource are ignored"
    );
    assert_eq!(again.metadata.generation, gen_before);

    // Finalizers hold deletion.
    vms.patch(
        "vm-a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": ["test/hold"]}})),
    )
    .await
    .expect("add finalizer");
    vms.delete("vm-a", &DeleteParams::default())
        .await
        .expect("delete");
    let held = vms.get("vm-a").await.expect("still there");
    assert!(held.metadata.deletion_timestamp.is_some());
    vms.patch(
        "vm-a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("drop finalizer");
    assert!(vms.get_opt("vm-a").await.expect("get_opt").is_none());

    // Invalid names are 422 Invalid with causes.
    let bad = vms
        .create(&PostParams::default(), &vm("Bad_Name", json!({})))
        .await
        .expect_err("must fail");
    match bad {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert_eq!(s.reason, "Invalid");
        }
        other => panic!("expected 422, got {other:?}"),
    }

    // Cluster-scoped kinds and unknown groups.
    let cudns: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &common::api_resource(
            "k8s.ovn.org",
            "v1",
            "ClusterUserDefinedNetwork",
            "clusteruserdefinednetworks",
        ),
    );
    assert!(
        cudns
            .list(&ListParams::default())
            .await
            .expect("cudn list")
            .items
            .is_empty()
    );
    let wrong: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &common::api_resource(
            "ipam.cluster.x-k8s.io",
            "v1alpha1",
            "IPAMClaim",
            "ipamclaims",
        ),
    );
    assert_eq!(
        api_code(
            &wrong
                .list(&ListParams::default())
                .await
                .expect_err("must fail")
        ),
        Some(404)
    );
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn discovery_lists_the_served_groups() {
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let discovery = kube::Discovery::new(client).run().await.expect("discovery");
    let groups: BTreeSet<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "kubevirt.io",
        "k8s.cni.cncf.io",
        "k8s.ovn.org",
        "frrk8s.metallb.io",
    ] {
        assert!(groups.contains(g), "group {g:?} missing from {groups:?}");
    }
    let (ar, caps) = discovery
        .resolve_gvk(&kube::api::GroupVersionKind::gvk(
            "k8s.cni.cncf.io",
            "v1alpha1",
            "IPAMClaim",
        ))
        .expect("IPAMClaim served");
    assert_eq!(ar.plural, "ipamclaims");
    assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn aggregated_discovery_matches_per_group_discovery() {
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let legacy = kube::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let aggregated = kube::Discovery::new(client.clone())
        .run_aggregated()
        .await
        .expect("aggregated discovery");
    let summary = |d: &kube::Discovery| -> BTreeSet<String> {
        d.groups()
            .flat_map(|g| {
                g.recommended_resources()
                    .into_iter()
                    .map(|(ar, caps)| {
                        format!(
                            "{} {} {:?} {:?} {:?}",
                            ar.api_version,
                            ar.plural,
                            caps.scope,
                            caps.subresources
                                .iter()
                                .map(|(s, _)| &s.plural)
                                .collect::<Vec<_>>(),
                            caps.operations
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let (l, a) = (summary(&legacy), summary(&aggregated));
    assert!(
        l.iter()
            .any(|r| r.starts_with("kubevirt.io/v1 virtualmachines Namespaced"))
    );
    assert_eq!(l, a);
    let core = client
        .list_core_api_versions_aggregated()
        .await
        .expect("/api aggregated");
    assert_eq!(core.items.len(), 1);
    let nodes = core.items[0].versions[0]
        .resources
        .iter()
        .find(|r| r.resource.as_deref() == Some("nodes"))
        .expect("nodes");
    assert_eq!(nodes.scope.as_deref(), Some("Cluster"));
    // Plain JSON still gets the per-group documents.
    let groups = client.list_api_groups().await.expect("/apis");
    assert!(groups.groups.iter().any(|g| g.name == "kubevirt.io"));
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn raw_watch_gets_410_as_an_error_event_and_bookmarks_have_type_meta() {
    let t = common::start(LabConfig {
        controllers: false,
        bookmark_interval_ms: 100,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let vms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &common::vm_resource());
    let first = vms
        .create(&PostParams::default(), &vm("w-1", json!({})))
        .await
        .expect("create");
    let rv = first.metadata.resource_version.clone().expect("rv");
    t.lab.expire_watches();
    let mut stream = vms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch starts")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected an in-stream 410, got {other:?}"),
    }
    let now = t.lab.store().resource_version().to_string();
    let mut stream = vms
        .watch(&WatchParams::default().timeout(5), &now)
        .await
        .expect("watch")
        .boxed();
    vms.create(&PostParams::default(), &vm("w-2", json!({})))
        .await
        .expect("create 2");
    let mut saw_added = false;
    let mut saw_bookmark = false;
    while let Some(ev) = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("event in time")
    {
        match ev.expect("event") {
            WatchEvent::Added(o) => saw_added |= o.metadata.name.as_deref() == Some("w-2"),
            WatchEvent::Bookmark(b) => {
                assert_eq!(b.types.kind, "VirtualMachine");
                saw_bookmark = true;
            }
            other => panic!("unexpected {other:?}"),
        }
        if saw_added && saw_bookmark {
            break;
        }
    }
    assert!(saw_added && saw_bookmark);
    t.lab.stop().await.expect("stop");
}

/// Runs `kube::runtime::watcher` and collects the names it has seen until `want` are all present.
async fn watcher_sees(
    api: Api<DynamicObject>,
    want: BTreeSet<String>,
    during: impl std::future::Future<Output = ()>,
) -> (BTreeSet<String>, usize, usize) {
    let mut stream = watcher(api, watcher::Config::default()).boxed();
    let mut seen = BTreeSet::new();
    let mut init_done = 0usize;
    let mut errors = 0usize;
    let collect = async {
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => {
                    if let Some(n) = o.metadata.name {
                        seen.insert(n);
                    }
                }
                Ok(watcher::Event::InitDone) => init_done += 1,
                Ok(_) => {}
                Err(_) => errors += 1,
            }
            if want.is_subset(&seen) {
                break;
            }
        }
    };
    let ((), ()) = tokio::time::timeout(
        Duration::from_secs(20),
        futures::future::join(collect, during),
    )
    .await
    .expect("watcher converged in time");
    (seen, init_done, errors)
}

#[tokio::test]
async fn watcher_survives_forced_410_and_relists() {
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let vms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &common::vm_resource());
    let want: BTreeSet<String> = (0..6).map(|i| format!("g-{i}")).collect();
    let lab = &t.lab;
    let writer = vms.clone();
    let during = async move {
        for i in 0..3 {
            writer
                .create(&PostParams::default(), &vm(&format!("g-{i}"), json!({})))
                .await
                .expect("create");
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        lab.expire_watches();
        for i in 3..6 {
            writer
                .create(&PostParams::default(), &vm(&format!("g-{i}"), json!({})))
                .await
                .expect("create");
        }
    };
    let (seen, init_done, _errors) = watcher_sees(vms, want.clone(), during).await;
    assert!(want.is_subset(&seen));
    assert!(
        init_done >= 2,
        "the watcher re-listed after 410 (InitDone seen {init_done} times)"
    );
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn watcher_survives_cut_streams() {
    let t = common::start(LabConfig {
        controllers: false,
        faults: FaultConfig {
            watch_cut_every: Some(Duration::from_millis(400)),
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let vms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &common::vm_resource());
    let want: BTreeSet<String> = (0..8).map(|i| format!("c-{i}")).collect();
    let writer = vms.clone();
    let during = async move {
        for i in 0..8 {
            writer
                .create(&PostParams::default(), &vm(&format!("c-{i}"), json!({})))
                .await
                .expect("create");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let (seen, init_done, _) = watcher_sees(vms, want.clone(), during).await;
    assert!(want.is_subset(&seen));
    assert_eq!(
        init_done, 1,
        "a cut stream resumes from its resourceVersion without re-listing"
    );
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn injected_errors_reach_the_client() {
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let vms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &common::vm_resource());
    t.lab.set_faults(FaultConfig {
        error_rate_429: 1.0,
        retry_after_seconds: 2,
        ..Default::default()
    });
    assert_eq!(
        api_code(
            &vms.list(&ListParams::default())
                .await
                .expect_err("must fail")
        ),
        Some(429)
    );
    t.lab.set_faults(FaultConfig {
        error_rate_500: 1.0,
        ..Default::default()
    });
    assert_eq!(
        api_code(
            &vms.list(&ListParams::default())
                .await
                .expect_err("must fail")
        ),
        Some(500)
    );
    t.lab.set_faults(FaultConfig {
        latency: Some(Duration::from_millis(200)),
        ..Default::default()
    });
    let start = std::time::Instant::now();
    vms.list(&ListParams::default()).await.expect("slow list");
    assert!(start.elapsed() >= Duration::from_millis(200));
    t.lab.set_faults(FaultConfig::default());
    vms.list(&ListParams::default())
        .await
        .expect("healthy again");
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn gone_on_resume_fault_answers_every_resumed_watch_with_410() {
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let vms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &common::vm_resource());
    let created = vms
        .create(&PostParams::default(), &vm("r-1", json!({})))
        .await
        .expect("create");
    let rv = created.metadata.resource_version.expect("rv");
    t.lab.set_faults(FaultConfig {
        gone_on_resume: true,
        ..Default::default()
    });
    let mut stream = vms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    match stream.next().await {
        Some(Ok(WatchEvent::Error(e))) => assert_eq!(e.code, 410),
        other => panic!("expected an in-stream 410, got {other:?}"),
    }
    t.lab.set_faults(FaultConfig::default());
    let mut stream = vms
        .watch(&WatchParams::default().timeout(1), &rv)
        .await
        .expect("watch")
        .boxed();
    vms.create(&PostParams::default(), &vm("r-2", json!({})))
        .await
        .expect("create");
    match stream.next().await {
        Some(Ok(WatchEvent::Added(o))) => assert_eq!(o.metadata.name.as_deref(), Some("r-2")),
        other => panic!("expected ADDED r-2, got {other:?}"),
    }
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn a_label_selected_watch_sees_objects_enter_and_leave_the_selection() {
    let t = common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await;
    let client = common::client(&t).await;
    let vms: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "default", &common::vm_resource());
    vms.create(&PostParams::default(), &vm("sel", json!({"team": "b"})))
        .await
        .expect("create");
    let rv = t.lab.store().resource_version().to_string();
    let mut stream = vms
        .watch(&WatchParams::default().labels("team=a").timeout(5), &rv)
        .await
        .expect("watch")
        .boxed();
    vms.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await
    .expect("enter");
    vms.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "1"}}})),
    )
    .await
    .expect("stay");
    vms.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "c"}}})),
    )
    .await
    .expect("leave");
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("event in time")
        {
            Some(Ok(WatchEvent::Added(_))) => kinds.push("ADDED"),
            Some(Ok(WatchEvent::Modified(_))) => kinds.push("MODIFIED"),
            Some(Ok(WatchEvent::Deleted(_))) => kinds.push("DELETED"),
            Some(Ok(WatchEvent::Bookmark(_))) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED", "MODIFIED", "DELETED"]);
    t.lab.stop().await.expect("stop");
}
