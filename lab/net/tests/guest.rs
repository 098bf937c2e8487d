//! Guest mode (root, FRR): a VM is its own netns, and a migration carries its link to the target
//! node's vmhost, so a TCP connection to the VM survives the switch-over; without guest mode the
//! address moves to another netns, which holds no such connection and resets it.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vmbgp_lab_net::guest::guest_netns;
use vmbgp_lab_net::netns;
use vmbgp_lab_net::{LabNet, Router};

const VM: Ipv4Addr = Ipv4Addr::new(198, 19, 9, 10);

/// ext reaches the test subnet through node-1 (a static route: no BGP in this test); node-1 hands
/// traffic for a VM on node-2 over the shared segment, as the lab's east-west emulation does.
async fn route_from_ext(lab: &LabNet) {
    let ext = lab.names().router_netns(Router::Ext);
    vmbgp_lab_net::cmd::run_ip_batch(
        Some(&ext),
        "route add 198.19.9.0/24 via 198.18.0.1\n",
        false,
    )
    .await
    .expect("static route in ext");
}

/// A paced stream (4 KiB every 10 ms, about 3 s) to the VM's sink, the VM moved from node-1 to
/// node-2 after 1 s; then a clean close: the sink's FIN comes back only when the connection lived.
async fn stream_through_a_move(lab: &LabNet) -> Result<(), String> {
    let info = lab.info();
    let mut stream = netns::tcp_connect_in(
        &info.ext_netns,
        None,
        SocketAddr::new(VM.into(), info.vm_ports.sink),
        Duration::from_secs(2),
    )
    .await
    .map_err(|e| format!("connect: {e}"))?;
    let chunk = [7u8; 4096];
    for n in 0..300 {
        if n == 100 {
            lab.dataplane()
                .place(VM, 2, None)
                .await
                .map_err(|e| format!("move: {e}"))?;
        }
        stream
            .write_all(&chunk)
            .await
            .map_err(|e| format!("write {n}: {e}"))?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stream
        .shutdown()
        .await
        .map_err(|e| format!("shutdown: {e}"))?;
    let mut rest = [0u8; 16];
    match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut rest)).await {
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(n)) => Err(format!("the sink sent {n} bytes")),
        Ok(Err(e)) => Err(format!("after the close: {e}")),
        Err(_) => Err("no FIN from the sink within 5 s".to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn a_tcp_stream_survives_a_guests_migration() {
    let (guard, lab) = common::up_with("guest", 2, |c| c.guest_vms = true, None).await;
    route_from_ext(&lab).await;
    lab.dataplane()
        .place(VM, 1, Some("ns/vm-g".into()))
        .await
        .expect("place");
    let guest = guest_netns(lab.names(), VM);
    assert!(
        vmbgp_lab_net::state::existing_netns().contains(&guest),
        "the guest netns exists"
    );
    let placement = &lab.dataplane().placements()[&VM];
    assert!(placement.guest && placement.node == 1, "{placement:?}");
    stream_through_a_move(&lab)
        .await
        .expect("the stream lived through the move");
    assert_eq!(lab.dataplane().placements()[&VM].node, 2);
    lab.dataplane().remove(VM).await.expect("remove");
    assert!(
        !vmbgp_lab_net::state::existing_netns().contains(&guest),
        "removing the VM deletes its guest"
    );
    let id = lab.names().lab_id().to_string();
    let dir = lab.info().state_dir;
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
    drop(guard);
    common::assert_nothing_left(&id, &dir);
}

/// The control: an address moved between vmhosts lands where no connection exists, which resets
/// the stream. The survival above is guest mode's doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, FRR and iproute2; ci/test.sh runs it (cargo test -- --include-ignored)"]
async fn without_guests_the_move_resets_the_stream() {
    let (guard, lab) = common::up("noguest", 2).await;
    route_from_ext(&lab).await;
    lab.dataplane().place(VM, 1, None).await.expect("place");
    let outcome = stream_through_a_move(&lab).await;
    assert!(
        outcome.is_err(),
        "the stream should not survive: {outcome:?}"
    );
    let id = lab.names().lab_id().to_string();
    let dir = lab.info().state_dir;
    let report = lab.down().await.expect("down");
    assert!(report.problems.is_empty(), "{report:?}");
    drop(guard);
    common::assert_nothing_left(&id, &dir);
}
