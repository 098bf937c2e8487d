//! `coordination.k8s.io/v1` Leases and `events.k8s.io/v1` Events through k8s-openapi's typed
//! clients, as a leader-electing controller uses them: compare-and-swap on a Lease's
//! resourceVersion (409 Conflict), kube-apiserver's MicroTime decoding (400) and Event rules
//! (422), an Event series patched in place, and both kinds in aggregated and legacy discovery.

mod common;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use vmbgp_lab_api::LabConfig;

const NS: &str = "default";

fn status(e: &kube::Error) -> (u16, String, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason.clone(), s.message.clone()),
        other => panic!("not an API error: {other}"),
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

async fn lab() -> common::TestLab {
    common::start(LabConfig {
        controllers: false,
        ..Default::default()
    })
    .await
}

#[tokio::test]
async fn a_lease_is_a_compare_and_swap_register() {
    let t = lab().await;
    let leases: Api<Lease> = Api::namespaced(common::client(&t).await, NS);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("lock".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("a".into()),
            lease_duration_seconds: Some(15),
            lease_transitions: Some(0),
            acquire_time: Some(now()),
            renew_time: Some(now()),
            ..LeaseSpec::default()
        }),
    };
    let created = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("create");
    let again = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect_err("a second create");
    assert_eq!(status(&again).0, 409, "AlreadyExists");

    // Two candidates read the same version; the first write wins, the second conflicts.
    let mut b = created.clone();
    b.spec.as_mut().expect("spec").holder_identity = Some("b".into());
    let mut c = created.clone();
    c.spec.as_mut().expect("spec").holder_identity = Some("c".into());
    let won = leases
        .replace("lock", &PostParams::default(), &b)
        .await
        .expect("b's swap");
    assert_ne!(
        won.metadata.resource_version,
        created.metadata.resource_version
    );
    let lost = leases
        .replace("lock", &PostParams::default(), &c)
        .await
        .expect_err("c's swap from a stale version");
    let (code, reason, _) = status(&lost);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    // A merge patch with the stale version as precondition conflicts too.
    let stale_patch = json!({"metadata": {"resourceVersion": created.metadata.resource_version},
        "spec": {"holderIdentity": "c"}});
    let lost = leases
        .patch("lock", &PatchParams::default(), &Patch::Merge(&stale_patch))
        .await
        .expect_err("stale patch");
    assert_eq!(status(&lost).0, 409);
    // kubectl patch's default for a built-in kind, refused (415) only for custom resources.
    leases
        .patch(
            "lock",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"leaseTransitions": 1}})),
        )
        .await
        .expect("a strategic merge patch of a built-in kind");
    let read = leases.get("lock").await.expect("typed read");
    assert_eq!(
        read.spec.as_ref().and_then(|s| s.lease_transitions),
        Some(1)
    );
    assert_eq!(
        read.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("b")
    );

    // Go's MicroTime wants six fractional digits; anything else is a 400 before validation.
    let coarse = json!({"spec": {"renewTime": "2026-12-03T18:30:00Z"}});
    let refused = leases
        .patch("lock", &PatchParams::default(), &Patch::Merge(&coarse))
        .await
        .expect_err("a MicroTime without microseconds");
    let (code, _, message) = status(&refused);
    assert_eq!(code, 400, "{message}");
    assert_eq!(
        message,
        "Lease in version \"v1\" cannot be handled as a Lease: parsing time \"2026-12-03T18:30:00Z\" \
         as \"2006-01-02T15:04:05.000000Z07:00\": cannot parse \"Z\" as \".000000\""
    );
    let negative = json!({"spec": {"leaseDurationSeconds": 0}});
    let refused = leases
        .patch("lock", &PatchParams::default(), &Patch::Merge(&negative))
        .await
        .expect_err("a zero lease duration");
    let (code, _, message) = status(&refused);
    assert_eq!(code, 422);
    assert!(
        message.contains("spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"),
        "{message}"
    );
    t.lab.stop().await.expect("stop");
}

fn event(name: &str) -> Event {
    Event {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(NS.into()),
            ..ObjectMeta::default()
        },
        event_time: Some(now()),
        type_: Some("Warning".into()),
        reason: Some("HostRouteNodeCapped".into()),
        action: Some("AdvertiseHostRoute".into()),
        note: Some("3 host routes, over the cap of 2".into()),
        reporting_controller: Some("vmbgp-controller".into()),
        reporting_instance: Some("vmbgp-controller-0".into()),
        regarding: Some(ObjectReference {
            api_version: Some("kubevirt.io/v1".into()),
            kind: Some("VirtualMachineInstance".into()),
            namespace: Some(NS.into()),
            name: Some("vm-1".into()),
            ..ObjectReference::default()
        }),
        ..Event::default()
    }
}

#[tokio::test]
async fn events_are_validated_as_kube_apiserver_does_and_series_patch_in_place() {
    let t = lab().await;
    let events: Api<Event> = Api::namespaced(common::client(&t).await, NS);
    let created = events
        .create(&PostParams::default(), &event("vm-1.1"))
        .await
        .expect("a recorder's Event");
    assert_eq!(created.reason.as_deref(), Some("HostRouteNodeCapped"));

    // What kube-runtime's Recorder does when the same Event recurs: a merge patch adding a series.
    let mut repeated = created.clone();
    repeated.series = Some(EventSeries {
        count: 2,
        last_observed_time: now(),
    });
    events
        .patch("vm-1.1", &PatchParams::default(), &Patch::Merge(&repeated))
        .await
        .expect("series patch");
    let listed = events.list(&ListParams::default()).await.expect("list");
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].series.as_ref().map(|s| s.count), Some(2));

    // Each rule a client can trip over, with the internal field names a real server reports.
    let invalid = |mutate: &dyn Fn(&mut Event)| {
        let mut e = event("bad");
        mutate(&mut e);
        e
    };
    let cases: Vec<(Event, &str)> = vec![
        (
            invalid(&|e| e.reporting_controller = None),
            "reportingController: Required value",
        ),
        (
            invalid(&|e| e.reporting_instance = Some("i".repeat(129))),
            "reportingInstance: Invalid value: \"\": can have at most 128 characters",
        ),
        (invalid(&|e| e.action = None), "action: Required value"),
        (invalid(&|e| e.reason = None), "reason: Required value"),
        (
            invalid(&|e| e.type_ = Some("Error".into())),
            "type: Invalid value: \"\": has invalid value: Error",
        ),
        (
            invalid(&|e| e.note = Some("n".repeat(1025))),
            "message: Invalid value: \"\": can have at most 1024 characters",
        ),
        (
            invalid(&|e| e.deprecated_count = Some(1)),
            "count: Invalid value: \"\": needs to be unset",
        ),
        (
            invalid(&|e| {
                e.series = Some(EventSeries {
                    count: 1,
                    last_observed_time: now(),
                })
            }),
            "series.count: Invalid value: \"\": should be at least 2",
        ),
        (
            invalid(&|e| e.event_time = None),
            "eventTime: Required value",
        ),
    ];
    for (bad, want) in cases {
        let refused = events
            .create(&PostParams::default(), &bad)
            .await
            .expect_err(want);
        let (code, _, message) = status(&refused);
        assert_eq!(code, 422, "{message}");
        assert!(message.contains(want), "{message} lacks {want}");
    }
    // An Event about a cluster-scoped object (no namespace in `regarding`) belongs in default or
    // kube-system.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(common::client(&t).await);
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "elsewhere"}})).expect("ns"),
        )
        .await
        .expect("namespace");
    let elsewhere: Api<Event> = Api::namespaced(common::client(&t).await, "elsewhere");
    let mut node_event = event("node-1.1");
    node_event.metadata.namespace = Some("elsewhere".into());
    node_event.regarding = Some(ObjectReference {
        kind: Some("Node".into()),
        name: Some("node-1".into()),
        ..ObjectReference::default()
    });
    let refused = elsewhere
        .create(&PostParams::default(), &node_event)
        .await
        .expect_err("a Node's Event outside default");
    let (code, _, message) = status(&refused);
    assert_eq!(code, 422, "{message}");
    assert!(
        message.contains(
            "involvedObject.namespace: Invalid value: \"\": does not match event.namespace"
        ),
        "{message}"
    );
    node_event.metadata.namespace = Some(NS.into());
    events
        .create(&PostParams::default(), &node_event)
        .await
        .expect("a Node's Event in default");

    // Immutable once written: only series and metadata may change.
    let changed = json!({"note": "something else"});
    let refused = events
        .patch("vm-1.1", &PatchParams::default(), &Patch::Merge(&changed))
        .await
        .expect_err("a changed note");
    let (code, _, message) = status(&refused);
    assert_eq!(code, 422);
    assert!(
        message.contains("message: Invalid value: \"something else\": field is immutable"),
        "{message}"
    );
    events
        .patch(
            "vm-1.1",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"seen": "yes"}}})),
        )
        .await
        .expect("a label");
    t.lab.stop().await.expect("stop");
}

#[tokio::test]
async fn discovery_lists_leases_and_events_with_kube_apiservers_short_names() {
    let t = lab().await;
    let client = common::client(&t).await;
    let discovery = kube::Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    for (group, kind, plural) in [
        ("coordination.k8s.io", "Lease", "leases"),
        ("events.k8s.io", "Event", "events"),
    ] {
        let (ar, caps) = discovery
            .resolve_gvk(&kube::api::GroupVersionKind::gvk(group, "v1", kind))
            .unwrap_or_else(|| panic!("{kind} served"));
        assert_eq!(ar.plural, plural);
        assert_eq!(caps.scope, kube::discovery::Scope::Namespaced);
        assert!(caps.subresources.is_empty(), "{kind} has no status");
    }

    // The legacy per-group-version lists and the aggregated document kubectl reads short names from.
    let legacy_short = |list: &k8s_openapi::apimachinery::pkg::apis::meta::v1::APIResourceList,
                        plural: &str| {
        list.resources
            .iter()
            .find(|r| r.name == plural)
            .map(|r| r.short_names.clone().unwrap_or_default())
            .unwrap_or_else(|| panic!("{plural} listed"))
    };
    let events_list = client
        .list_api_group_resources("events.k8s.io/v1")
        .await
        .expect("events.k8s.io/v1");
    assert_eq!(legacy_short(&events_list, "events"), ["ev"]);
    let leases_list = client
        .list_api_group_resources("coordination.k8s.io/v1")
        .await
        .expect("coordination.k8s.io/v1");
    assert!(legacy_short(&leases_list, "leases").is_empty());
    let aggregated = client
        .list_api_groups_aggregated()
        .await
        .expect("aggregated discovery");
    let aggregated_short = |group: &str, plural: &str| {
        aggregated
            .items
            .iter()
            .filter(|g| g.metadata.as_ref().and_then(|m| m.name.as_deref()) == Some(group))
            .flat_map(|g| g.versions.iter())
            .flat_map(|v| v.resources.iter())
            .find(|r| r.resource.as_deref() == Some(plural))
            .map(|r| r.short_names.clone())
            .unwrap_or_else(|| panic!("{group} {plural} in aggregated discovery"))
    };
    assert_eq!(aggregated_short("events.k8s.io", "events"), ["ev"]);
    assert!(aggregated_short("coordination.k8s.io", "leases").is_empty());
    t.lab.stop().await.expect("stop");
}
