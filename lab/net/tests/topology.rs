//! Topology and supervisor: up/down leaves nothing; teardown after a failed or interrupted up.

mod common;

use std::time::Duration;

use vmbgp_lab_net::frr::Daemon;
use vmbgp_lab_net::{LabNet, LabNetConfig, Router, TeardownGuard, state};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn up_then_down_leaves_nothing() {
    common::require_prerequisites();
    let (id, dir) = common::unique("updown");
    let _guard = TeardownGuard::new(&dir);
    let lab = LabNet::up(
        LabNetConfig::new(&id, &dir, 2, common::ext_config(2, common::BMP_PORT)),
        None,
    )
    .await
    .expect("lab up");
    let info = lab.info();
    assert!(info.ext_bgpd_vty.exists(), "ext's vty socket exists");
    for r in [Router::Ext, Router::Node(1), Router::Node(2)] {
        assert!(
            lab.supervisor().is_alive(r, Daemon::Zebra),
            "{r} zebra alive"
        );
        assert!(lab.supervisor().is_alive(r, Daemon::Bgpd), "{r} bgpd alive");
    }
    let st = vmbgp_lab_net::status(&dir).await.expect("status");
    assert!(st.netns.values().all(|e| *e), "{st:?}");
    assert_eq!(st.netns.len(), 6);
    assert!(st.daemons.values().all(|a| *a), "{st:?}");
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
    assert_eq!(report.stopped.len(), 6);
    common::assert_nothing_left(&id, &dir);
}

/// A failed `up` (bgpd cannot start, after the netns exist and every zebra runs) removes everything it
/// created: zebras stopped by pid, netns deleted, files removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn failed_up_cleans_up() {
    common::require_prerequisites();
    let (id, dir) = common::unique("failed");
    let _guard = TeardownGuard::new(&dir);
    // An FRR directory whose bgpd is /bin/false: zebra starts, bgpd's start fails mid-way.
    let fake = std::env::temp_dir().join(format!("vmbgp-labnet-fakefrr-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&fake);
    std::fs::create_dir_all(&fake).expect("mkdir");
    std::os::unix::fs::symlink("/usr/lib/frr/zebra", fake.join("zebra")).expect("symlink");
    std::os::unix::fs::symlink("/bin/false", fake.join("bgpd")).expect("symlink");
    let mut config = LabNetConfig::new(&id, &dir, 2, common::ext_config(2, common::BMP_PORT));
    config.frr_bin_dir = fake.clone();
    let result = LabNet::up(config, None).await;
    std::fs::remove_dir_all(&fake).expect("remove fake FRR dir");
    let err = result.expect_err("up must fail when bgpd cannot start");
    assert!(err.to_string().contains("bgpd"), "{err}");
    common::assert_nothing_left(&id, &dir);
}

/// A netns name that already exists (another lab with the same id) is refused before anything is
/// created or recorded, so teardown never deletes someone else's netns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn colliding_lab_id_is_refused_and_the_other_netns_is_kept() {
    common::require_prerequisites();
    let (id, dir) = common::unique("collide");
    let _guard = TeardownGuard::new(&dir);
    let names = vmbgp_lab_net::LabNames::new(&id).expect("names");
    let occupied = names.vmhost_netns(2);
    std::process::Command::new("ip")
        .args(["netns", "add", &occupied])
        .status()
        .expect("ip netns add");
    let result = LabNet::up(
        LabNetConfig::new(&id, &dir, 2, common::ext_config(2, common::BMP_PORT)),
        None,
    )
    .await;
    let kept = state::existing_netns().contains(&occupied);
    std::process::Command::new("ip")
        .args(["netns", "del", &occupied])
        .status()
        .expect("ip netns del");
    let err = result.expect_err("up must fail when a netns name is taken");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert!(kept, "the other lab's netns was not touched");
    common::assert_nothing_left(&id, &dir);
}

/// A `lab up` process killed in the middle (simulated: the lab object is leaked after FRR started,
/// as if the process died) is fully removed by `teardown(state_dir)` from the state file alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn teardown_after_interrupted_up_leaves_nothing() {
    common::require_prerequisites();
    let (id, dir) = common::unique("killed");
    let guard = TeardownGuard::new(&dir);
    let up = LabNet::up(
        LabNetConfig::new(&id, &dir, 1, common::ext_config(1, common::BMP_PORT)),
        None,
    );
    // Cancel `up` part-way: after 150 ms some netns and maybe daemons exist, nothing was cleaned.
    let _ = tokio::time::timeout(Duration::from_millis(150), up).await;
    // Whatever state exists is recorded; a daemon started after cancellation is impossible because
    // the future was dropped, but daemons started before keep running (they are detached).
    let recorded = state::read_state(&dir.join(state::STATE_FILE));
    assert!(
        recorded.is_ok(),
        "the state file was written before anything was created"
    );
    drop(guard); // runs teardown from the state file
    common::assert_nothing_left(&id, &dir);
}

/// Faults from a plan: a link flap cuts ext → node-1 for its duration; a bgpd restart replaces the
/// daemon; both are recorded as ground truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn scheduled_link_flap_and_bgpd_restart() {
    use std::sync::Arc;
    use std::time::Instant;
    use vmbgp_lab_net::faults::FaultPlan;
    use vmbgp_lab_net::net_ground_truth::{MemoryGroundTruth, NetEvent};

    common::require_prerequisites();
    let (id, dir) = common::unique("faults");
    let _guard = TeardownGuard::new(&dir);
    let truth = Arc::new(MemoryGroundTruth::default());
    let lab = LabNet::up(
        LabNetConfig::new(&id, &dir, 1, common::ext_config(1, common::BMP_PORT)),
        Some(truth.clone()),
    )
    .await
    .expect("lab up");
    let ping = |ns: String| async move {
        tokio::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "ping",
                "-n",
                "-q",
                "-c",
                "1",
                "-W",
                "1",
                "198.18.0.1",
            ])
            .output()
            .await
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    let ext = lab.info().ext_netns;
    assert!(
        ping(ext.clone()).await,
        "ext reaches node-1 before the fault"
    );
    let bgpd_before = lab.supervisor().is_alive(Router::Node(1), Daemon::Bgpd);
    assert!(bgpd_before);

    let plan: FaultPlan = serde_json::from_value(serde_json::json!({
        "bgpdRestarts": [{"router": "node-1", "afterMs": 0}],
        "linkFlaps": [{"router": "node-1", "afterMs": 0, "downMs": 1500}]
    }))
    .expect("plan");
    assert!(
        lab.faults()
            .schedule(
                serde_json::from_value(
                    serde_json::json!({"bgpdRestarts": [{"router": "node-9", "afterMs": 0}]})
                )
                .expect("plan"),
                Instant::now()
            )
            .is_err(),
        "unknown routers are refused"
    );
    let start = Instant::now();
    let task = lab.faults().schedule(plan, start).expect("schedule");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!ping(ext.clone()).await, "link down: no reply");
    let results = task.await.expect("faults ran");
    assert_eq!(results.len(), 3, "{results:?}");
    assert!(results.iter().all(|r| r.outcome == "ok"), "{results:?}");
    assert!(start.elapsed() >= Duration::from_millis(1500));
    assert!(ping(ext.clone()).await, "link up again: replies");
    assert!(
        lab.supervisor().is_alive(Router::Node(1), Daemon::Bgpd),
        "bgpd runs after restart"
    );
    let events: Vec<NetEvent> = truth.events().into_iter().map(|(_, _, e)| e).collect();
    assert!(events.contains(&NetEvent::RouterRestarted {
        router: "node-1".into(),
        daemon: "bgpd".into()
    }));
    assert!(events.contains(&NetEvent::LinkChanged {
        router: "node-1".into(),
        up: false
    }));
    assert!(events.contains(&NetEvent::LinkChanged {
        router: "node-1".into(),
        up: true
    }));
    lab.down().await.expect("down");
    common::assert_nothing_left(&id, &dir);
}

/// The BMP drop fault aborts ext's BMP TCP session (the station sees a reset) and bgpd reconnects
/// by itself; both are ground truth. Without a session to drop, the fault says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn bmp_drop_resets_the_session_and_bgpd_reconnects() {
    use std::sync::Arc;
    use tokio::io::AsyncReadExt;
    use vmbgp_lab_net::net_ground_truth::{MemoryGroundTruth, NetEvent};

    common::require_prerequisites();
    let (id, dir) = common::unique("bmpdrop");
    let _guard = TeardownGuard::new(&dir);
    let truth = Arc::new(MemoryGroundTruth::default());
    let lab = LabNet::up(
        LabNetConfig::new(&id, &dir, 1, common::ext_config(1, common::BMP_PORT)),
        Some(truth.clone()),
    )
    .await
    .expect("lab up");
    let ext = lab.info().ext_netns;
    let refused = lab.drop_bmp().await.expect_err("no session yet");
    assert!(
        refused
            .to_string()
            .contains("no established BMP connection"),
        "{refused}"
    );

    let listener = vmbgp_lab_net::netns::tokio_listener_in(
        &ext,
        std::net::SocketAddr::from(([127, 0, 0, 1], common::BMP_PORT)),
    )
    .await
    .expect("station");
    let mut first = accept(&listener).await;
    lab.drop_bmp().await.expect("drop and reconnect");
    // The station's side of the old session was reset, not closed in order.
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(5), first.read(&mut buf)).await {
            Ok(Ok(0)) => break "closed",
            Ok(Ok(_)) => continue, // what bgpd sent before the drop
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            other => panic!("the old session did not end: {other:?}"),
        }
    };
    assert_eq!(ended, "reset");
    let mut second = accept(&listener).await;
    let n = tokio::time::timeout(Duration::from_secs(5), second.read(&mut buf))
        .await
        .expect("bgpd speaks on the new session")
        .expect("read");
    assert!(n >= 6 && buf[0] == 3, "a BMP v3 message on the new session");
    let events: Vec<NetEvent> = truth.events().into_iter().map(|(_, _, e)| e).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NetEvent::BmpSessionDropped { connections: 1, .. })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, NetEvent::BmpSessionReestablished { .. })),
        "{events:?}"
    );
    drop((first, second, listener));
    lab.down().await.expect("down");
    common::assert_nothing_left(&id, &dir);
}

async fn accept(listener: &tokio::net::TcpListener) -> tokio::net::TcpStream {
    tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("bgpd connects within 10 s")
        .expect("accept")
        .0
}
