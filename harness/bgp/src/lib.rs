//! What the harness observes of BGP at the external router: a BMP station, a kernel FIB route
//! watcher, an FRR vty client and a BGP session poller. Every observation carries a
//! [`MonoStamp`](vmbgp_host::clock::MonoStamp) from the run's one [`RunClock`](vmbgp_host::clock::RunClock),
//! taken right after the read that returned it and before any parsing (DESIGN §4). Router
//! timestamps are kept only as labelled [`ExternalStamp`](vmbgp_host::clock::ExternalStamp)s.
//! Nothing here panics on input or depends on the lab.
//!
//! # API (all async entry points need a tokio runtime)
//!
//! **[`bmp`] — BMP station** (issue 6 `routeConvergence` → Adj-RIB-In; `bgpSessions` → Peer Up/Down)
//! ```text
//! let config = BmpStationConfig::new("127.0.0.1:5000".parse()?, [router_source_ip]) // port 0 = any free port
//!     .in_netns("ext")                                             // omit for the host's netns
//!     .capture_to(results_dir);                                    // optional raw-stream artefact
//! let (station, mut rx): (BmpStation, UnboundedReceiver<BmpEvent>) =
//!     BmpStation::start(config, clock).await?;
//! station.local_addr();        // where FRR must `bmp connect` (inside the netns)
//! let mut book = PeerBook::new();                  // one authoritative connection per router
//! while let Some(event) = rx.recv().await {
//!     for PeerChange { at, peer: PeerKey { router, address, .. }, asn, up, .. } in book.on_event(&event) { ... }
//!     let BmpEvent { at, connection, router /* None: listener-level */, kind } = event;
//!     match kind {
//!         BmpEventKind::Connected { remote, local } | BmpEventKind::Disconnected(reason) => ...,
//!         BmpEventKind::Refused { remote, nth, .. } => ...,                       // finding
//!         BmpEventKind::DuplicateRouter { remote, existing_connection, nth } => ..., // finding
//!         BmpEventKind::WarningsSuppressed { reported, suppressed } => ...,       // one line
//!         BmpEventKind::Message(BmpMessage::Initiation(i)) => i.frr_version,     // "8.4.4"
//!         BmpEventKind::Message(BmpMessage::RouteMonitoring(rm)) if book.is_authoritative(connection) =>
//!             (rm.peer.policy, rm.announced /* prefix, next_hop, as_path, communities */,
//!              rm.withdrawn, rm.end_of_rib),
//!         BmpEventKind::Message(BmpMessage::Malformed(m)) => (m.error, m.raw),  // stream goes on
//!         _ => ...   // PeerUp/PeerDown: use the PeerBook's changes, not the raw messages
//!     }
//! }
//! station.stop().await;        // emits Disconnected(StationStopped) per connection
//! ```
//! [`bmp::StreamDecoder`] decodes a recorded stream exactly as the station does (replays).
//!
//! **[`fib`] — kernel FIB watcher** (route usable at the external router)
//! ```text
//! let (watcher, mut rx) = FibWatcher::start(FibWatcherConfig::new().in_netns("ext"), clock).await?;
//! // FibEvent::Route(RouteChange { at, prefix: Ipv4Net, kind: Present|Added|Replaced|Removed,
//! //                               next_hops: Vec<Ipv4Addr> /* sorted, ECMP */, protocol, table, .. })
//! // FibEvent::DumpComplete { at } after the initial dump; FibEvent::Overrun { at } = events lost
//! watcher.nexthop_compat_mode();   // Some(false): ECMP gateways of nhid routes are not observed
//! watcher.stop().await;
//! // The watcher's own floor (request sent → event stamped; blackhole /32 in an unused table):
//! let report = fib::calibrate::calibrate_event_latency(CalibrationConfig::new().in_netns("ext"), clock).await?;
//! ```
//!
//! **[`vty`] — FRR access** (`--frr-vty-dir` or `--frr-exec`), one object-safe trait:
//! ```text
//! let cli: Arc<dyn FrrCli> = Arc::new(VtyCli::new("/var/run/frr", Duration::from_secs(2)));
//! let cli: Arc<dyn FrrCli> = Arc::new(ExecCli::from_prefix_str("podman exec frr", timeout)?);
//! cli.json(Daemon::Bgpd, "show bgp ipv4 unicast 198.19.7.0/24 json").await?;  // serde_json::Value
//! cli.run_ok(Daemon::Bgpd, "show bmp").await?;                                // String
//! cli.configure(Daemon::Bgpd, &lines).await?;   // Vec<(line, CliReply)> of failed lines
//! ```
//!
//! **[`table`] — the router's BGP table** (local-pref per best path, which BMP cannot show for eBGP):
//! ```text
//! let table = BgpTable::from_json(&cli.json(Daemon::Bgpd, table::SHOW_TABLE).await?)?;
//! table.best[&prefix].local_pref;   // Some(250) when a policy set it
//! ```
//!
//! **[`session`] — BGP session poller** over any `FrrCli`:
//! ```text
//! let (poller, mut rx) = SessionPoller::spawn(cli, clock, SessionPollerConfig::new(Duration::from_millis(100)));
//! // SessionEvent::Sample(SessionSample { requested_at, answered_at, peers: BTreeMap<String, PeerSample> })
//! // SessionEvent::Change(SessionChange { peer, not_before, seen_at, kind: StateChanged|Reset|Appeared|Disappeared })
//! // SessionEvent::PollFailed { requested_at, failed_at, error }
//! poller.stop().await;
//! ```
//! Every channel is unbounded so a slow consumer never delays a read (and so a stamp); dropping
//! a station, watcher or poller stops it.

pub mod bmp;
pub mod fib;
pub mod session;
pub mod table;
pub mod vty;
