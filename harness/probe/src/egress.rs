//! The egress echo endpoint: an HTTP server (axum) listening inside the chosen netns on the
//! egress endpoint address. VMs call `GET /egress?uuid=<run uuid>&vm=<namespace>/<name>`
//! (optionally `&addr=<vm ip>`; the lab's simulated guests send their address in the
//! `x-vmbgp-vm-address` header instead); the endpoint records the TCP peer (source) address and
//! the claimed VM, stamped with the run clock, and answers with the source address it saw. [`EgressEndpoint::verdict`] compares the sources a
//! VM was seen from with the VM's own address: equal means its traffic left unNATed.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use tokio::sync::oneshot;
use vmbgp_host::clock::{MonoStamp, RunClock};
use vmbgp_host::netns::in_netns;

use crate::error::ProbeError;
use crate::ser;

/// Where and how the endpoint listens.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    /// Network namespace to listen in (`None`: the caller's).
    pub netns: Option<String>,
    /// Address to listen on, e.g. the external router's `198.18.0.155:8080` (port 0: any free port).
    pub listen: SocketAddr,
    /// This run's uuid; calls carrying another uuid are recorded but not used in verdicts.
    pub run_uuid: Option<String>,
    /// Bound on records kept (later calls are counted, not kept).
    pub max_records: usize,
}

impl EgressConfig {
    pub fn new(listen: SocketAddr) -> EgressConfig {
        EgressConfig {
            netns: None,
            listen,
            run_uuid: None,
            max_records: 100_000,
        }
    }
}

/// One call to `/egress`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EgressRecord {
    /// When the request reached the handler.
    #[serde(serialize_with = "ser::stamp", rename = "atNs")]
    pub at: MonoStamp,
    /// The TCP peer address: the source the VM's traffic arrived with.
    pub source: SocketAddr,
    /// The `vm` query parameter (`namespace/name`), when given.
    pub claimed_vm: Option<String>,
    /// The VM address the caller claims (`addr` query parameter or `x-vmbgp-vm-address` header).
    pub claimed_address: Option<IpAddr>,
    /// The `uuid` query parameter, when given.
    pub uuid: Option<String>,
}

/// What the endpoint concluded for one VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "verdict")]
pub enum EgressVerdict {
    /// Every call from this VM came from its own address.
    Unnated {
        #[serde(serialize_with = "ser::stamp", rename = "firstSeenNs")]
        first_seen: MonoStamp,
        calls: u64,
    },
    /// At least one call came from another address (SNAT, or a wrong claim).
    Natted {
        #[serde(serialize_with = "ser::stamp", rename = "firstSeenNs")]
        first_seen: MonoStamp,
        calls: u64,
        /// The distinct sources seen, sorted.
        sources: Vec<IpAddr>,
    },
    /// No call from this VM was recorded; the reason says what was seen instead.
    NotSeen { reason: String },
}

#[derive(Debug, Default)]
struct Log {
    records: Vec<EgressRecord>,
    not_kept: u64,
}

#[derive(Debug, Clone)]
struct AppState {
    clock: RunClock,
    log: Arc<Mutex<Log>>,
    max_records: usize,
}

/// The running endpoint. Dropping it stops the server.
#[derive(Debug)]
pub struct EgressEndpoint {
    local_addr: SocketAddr,
    run_uuid: Option<String>,
    log: Arc<Mutex<Log>>,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

/// The header the lab's simulated guests put their address in.
pub const VM_ADDRESS_HEADER: &str = "x-vmbgp-vm-address";

async fn egress_handler(
    State(app): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(params): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, String) {
    let at = app.clock.now();
    let claimed_vm = params.get("vm").cloned();
    let claimed_address = params
        .get("addr")
        .map(String::as_str)
        .or_else(|| headers.get(VM_ADDRESS_HEADER).and_then(|v| v.to_str().ok()))
        .and_then(|v| v.trim().parse::<IpAddr>().ok());
    let identified = claimed_vm.is_some() || claimed_address.is_some();
    let record = EgressRecord {
        at,
        source: peer,
        claimed_vm,
        claimed_address,
        uuid: params.get("uuid").cloned(),
    };
    {
        let mut log = app.log.lock().unwrap_or_else(|p| p.into_inner());
        if log.records.len() < app.max_records {
            log.records.push(record);
        } else {
            log.not_kept += 1;
        }
    }
    if identified {
        (StatusCode::OK, format!("{}\n", peer.ip()))
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("missing ?vm=namespace/name; source {}\n", peer.ip()),
        )
    }
}

impl EgressEndpoint {
    /// Binds inside `config.netns` and starts serving on the current tokio runtime.
    pub async fn start(
        clock: RunClock,
        config: EgressConfig,
    ) -> Result<EgressEndpoint, ProbeError> {
        let listen = config.listen;
        let std_listener = in_netns(config.netns.as_deref(), move || {
            let listener = std::net::TcpListener::bind(listen)?;
            listener.set_nonblocking(true)?;
            Ok::<_, std::io::Error>(listener)
        })?
        .map_err(|source| ProbeError::EgressBind { listen, source })?;
        let listener = tokio::net::TcpListener::from_std(std_listener)
            .map_err(|source| ProbeError::EgressBind { listen, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| ProbeError::EgressBind { listen, source })?;
        let log = Arc::new(Mutex::new(Log::default()));
        let app = Router::new()
            .route("/egress", get(egress_handler))
            .with_state(AppState {
                clock,
                log: Arc::clone(&log),
                max_records: config.max_records,
            });
        let (tx, rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let service = app.into_make_service_with_connect_info::<SocketAddr>();
            let result = axum::serve(listener, service)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "egress endpoint stopped with an error");
            }
        });
        Ok(EgressEndpoint {
            local_addr,
            run_uuid: config.run_uuid,
            log,
            shutdown: Some(tx),
            server: Some(server),
        })
    }

    /// The address actually listened on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The URL a VM should call, for cloud-init.
    pub fn url_for(&self, run_uuid: &str, vm: &str) -> String {
        format!(
            "http://{}/egress?uuid={}&vm={}",
            self.local_addr,
            percent_encode(run_uuid),
            percent_encode(vm)
        )
    }

    /// All records so far, in arrival order, and how many were not kept.
    pub fn records(&self) -> (Vec<EgressRecord>, u64) {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        (log.records.clone(), log.not_kept)
    }

    /// Compares the sources `vm` (`namespace/name`) was seen from with its address. A call counts
    /// for the VM when it names it, or names no VM but claims its address.
    pub fn verdict(&self, vm: &str, vm_addr: IpAddr) -> EgressVerdict {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        verdict_of(&log.records, self.run_uuid.as_deref(), vm, vm_addr)
    }

    /// Stops the server and returns every record.
    pub async fn shutdown(mut self) -> (Vec<EgressRecord>, u64) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.records()
    }
}

impl Drop for EgressEndpoint {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Query values keep unreserved characters and '/'; everything else is escaped.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

fn verdict_of(
    records: &[EgressRecord],
    run_uuid: Option<&str>,
    vm: &str,
    vm_addr: IpAddr,
) -> EgressVerdict {
    let mut other_runs = 0u64;
    let mut first_seen = None;
    let mut calls = 0u64;
    let mut sources: Vec<IpAddr> = Vec::new();
    let vm_addr_c = canonical(vm_addr);
    let for_this_vm = |r: &&EgressRecord| match r.claimed_vm.as_deref() {
        Some(name) => name == vm,
        None => r.claimed_address.map(canonical) == Some(vm_addr_c),
    };
    for r in records.iter().filter(for_this_vm) {
        if let Some(want) = run_uuid
            && r.uuid.as_deref() != Some(want)
        {
            other_runs += 1;
            continue;
        }
        calls += 1;
        first_seen = first_seen.or(Some(r.at));
        let ip = canonical(r.source.ip());
        if !sources.contains(&ip) {
            sources.push(ip);
        }
    }
    let Some(first_seen) = first_seen else {
        let mut reason = format!("no call to /egress claimed vm={vm} or address {vm_addr}");
        if other_runs > 0 {
            reason.push_str(&format!(
                " with this run's uuid ({other_runs} from other runs)"
            ));
        }
        if let Some(r) = records
            .iter()
            .find(|r| canonical(r.source.ip()) == canonical(vm_addr))
        {
            reason.push_str(&format!(
                "; a call from {vm_addr} claimed {:?}",
                r.claimed_vm.as_deref().unwrap_or("nothing")
            ));
        }
        return EgressVerdict::NotSeen { reason };
    };
    sources.sort();
    if sources == [canonical(vm_addr)] {
        EgressVerdict::Unnated { first_seen, calls }
    } else {
        EgressVerdict::Natted {
            first_seen,
            calls,
            sources,
        }
    }
}

/// IPv4-mapped IPv6 peers (dual-stack listeners) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rec(ms: u64, source: &str, vm: Option<&str>, uuid: Option<&str>) -> EgressRecord {
        EgressRecord {
            at: MonoStamp::from_offset(Duration::from_millis(ms)),
            source: format!("{source}:40000").parse().expect("addr"),
            claimed_vm: vm.map(str::to_string),
            claimed_address: None,
            uuid: uuid.map(str::to_string),
        }
    }

    #[test]
    fn a_call_claiming_only_the_address_counts_for_that_vm() {
        let mut by_address = rec(1, "198.18.4.2", None, None);
        by_address.claimed_address = Some("198.19.0.30".parse().expect("ip"));
        match verdict_of(
            &[by_address],
            None,
            "ns/a",
            "198.19.0.30".parse().expect("ip"),
        ) {
            EgressVerdict::Natted { sources, .. } => {
                assert_eq!(sources, vec!["198.18.4.2".parse::<IpAddr>().expect("ip")])
            }
            other => panic!("expected NATed, got {other:?}"),
        }
    }

    #[test]
    fn verdicts_compare_sources_with_the_vm_address() {
        let vm_ip: IpAddr = "198.19.0.30".parse().expect("ip");
        let records = vec![
            rec(1, "198.19.0.30", Some("ns/a"), Some("u1")),
            rec(2, "198.19.0.30", Some("ns/a"), Some("u1")),
            rec(3, "198.18.0.1", Some("ns/b"), Some("u1")),
            rec(4, "198.19.0.31", Some("ns/b"), Some("u1")),
            rec(5, "198.19.0.32", Some("ns/c"), Some("old-run")),
            rec(6, "198.19.0.33", None, Some("u1")),
        ];
        assert_eq!(
            verdict_of(&records, Some("u1"), "ns/a", vm_ip),
            EgressVerdict::Unnated {
                first_seen: MonoStamp::from_offset(Duration::from_millis(1)),
                calls: 2
            }
        );
        let EgressVerdict::Natted { sources, calls, .. } = verdict_of(
            &records,
            Some("u1"),
            "ns/b",
            "198.19.0.31".parse().expect("ip"),
        ) else {
            panic!("expected NATed");
        };
        assert_eq!(calls, 2);
        assert_eq!(
            sources,
            vec![
                "198.18.0.1".parse::<IpAddr>().expect("ip"),
                "198.19.0.31".parse().expect("ip")
            ]
        );
        let EgressVerdict::NotSeen { reason } = verdict_of(
            &records,
            Some("u1"),
            "ns/c",
            "198.19.0.32".parse().expect("ip"),
        ) else {
            panic!("expected not seen");
        };
        assert!(reason.contains("1 from other runs"), "{reason}");
        let EgressVerdict::NotSeen { reason } = verdict_of(
            &records,
            Some("u1"),
            "ns/d",
            "198.19.0.33".parse().expect("ip"),
        ) else {
            panic!("expected not seen");
        };
        assert!(reason.contains("claimed \"nothing\""), "{reason}");
    }

    #[test]
    fn mapped_ipv6_peers_compare_as_ipv4() {
        let records = vec![rec(1, "[::ffff:198.19.0.30]", Some("ns/a"), None)];
        assert!(matches!(
            verdict_of(&records, None, "ns/a", "198.19.0.30".parse().expect("ip")),
            EgressVerdict::Unnated { calls: 1, .. }
        ));
    }

    #[test]
    fn urls_escape_query_values() {
        assert_eq!(percent_encode("ns/vm-1"), "ns/vm-1");
        assert_eq!(percent_encode("a b&c"), "a%20b%26c");
    }
}
