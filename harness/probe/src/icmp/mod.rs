//! Concurrent per-target ICMP echo streams from one socket, open-loop: each target has its own
//! schedule (rate changeable while running), probes are sent when due whether or not earlier ones
//! were answered, and both the scheduled and the actual send instant are kept.
//!
//! Structure: one socket opened inside the chosen netns and one event-loop thread. The loop
//! sends the probes that are due (a heap of per-target due instants), reads the socket after
//! every send, and otherwise sleeps in `ppoll` until the next probe is due or a message arrives;
//! each message is stamped with [`RunClock::now`] right after `recvmsg` returns, before any lock
//! is taken. Per-target `stream::Stream`s live behind one state mutex; stamped arrivals are
//! queued and whoever takes that mutex (the loop, a snapshot) records them first, so no timeout
//! is decided on stale data. Reports are computed from that compact state on demand
//! ([`IcmpProber::snapshot`], [`IcmpProber::finish`]); a snapshot holds the mutex for 32 targets
//! at a time, which bounds how long the loop (and a stamp) can wait for it.
//!
//! Why not surge-ping: it stamps RTTs with its own `Instant` (not the run clock), needs one task
//! and one timer per in-flight probe (100k/s at 1,000 targets × 100/s), is closed-loop per
//! pinger (`ping().await` waits for the reply), and hides the kernel's drop counter. A dedicated
//! thread also stamps closer to the kernel than a tokio task woken by the reactor, and one thread
//! for sending and receiving avoids a wake-up (context switch) per reply.

mod packet;
pub mod report;
mod socket;
pub(crate) mod stream;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;
use vmbgp_host::clock::{MonoStamp, RunClock};
use vmbgp_host::netns::in_netns;

pub use report::{
    LossPeriod, LossSince, ProbeEvent, ProberStats, ReplyGap, RttSummary, StopReason, TargetReport,
};
pub use socket::{SocketChoice, SocketKind};

use crate::error::ProbeError;
use packet::{ProbeTag, REQUEST_LEN, Received};
use socket::IcmpSocket;
use stream::{ReplyKind, SendOutcome, Stream, StreamLimits};
use vmbgp_model::Measured;

/// A per-target probe rate, 1..=10,000 probes per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeRate(u32);

impl ProbeRate {
    pub const MAX_PER_SECOND: u32 = 10_000;
    /// The rate while a target converges (DESIGN §4).
    pub const CONVERGING: ProbeRate = ProbeRate(100);
    /// The rate during live migrations (DESIGN §4).
    pub const MIGRATION: ProbeRate = ProbeRate(1000);
    /// The default rate once a target's reachability is sustained.
    pub const STEADY: ProbeRate = ProbeRate(10);

    pub fn per_second(n: u32) -> Result<ProbeRate, ProbeError> {
        if (1..=Self::MAX_PER_SECOND).contains(&n) {
            Ok(ProbeRate(n))
        } else {
            Err(ProbeError::InvalidRate { per_second: n })
        }
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The spacing between probes.
    pub fn interval(self) -> Duration {
        Duration::from_nanos(1_000_000_000 / u64::from(self.0))
    }
}

/// Prober-wide settings.
#[derive(Debug, Clone)]
pub struct ProberConfig {
    /// Network namespace to open the socket in (`None`: the caller's).
    pub netns: Option<String>,
    pub socket: SocketChoice,
    /// Forwarding delay threshold: a reply later than this counts as lost. ≤ 60 s.
    pub timeout: Duration,
    /// Consecutive replies that make reachability "sustained".
    pub sustain_count: u32,
    /// Bound on the number of targets at once.
    pub max_targets: usize,
    /// Bound on the prober's lifetime: every stream stops sending after this.
    pub max_run: Duration,
    /// Loss periods kept per target: the first 16 and the most recent rest (the longest is
    /// always reported as `loss_of_connectivity`).
    pub max_loss_periods: usize,
    /// Socket receive buffer (bytes); large enough for a burst of replies from every target.
    pub recv_buffer: usize,
    /// When the sender falls further behind than this, it skips missed slots (counted).
    pub max_send_lag: Duration,
}

impl Default for ProberConfig {
    fn default() -> Self {
        ProberConfig {
            netns: None,
            socket: SocketChoice::Auto,
            timeout: Duration::from_secs(1),
            sustain_count: 100,
            max_targets: 4096,
            max_run: Duration::from_secs(4 * 3600),
            max_loss_periods: 256,
            recv_buffer: 8 << 20,
            max_send_lag: Duration::from_millis(200),
        }
    }
}

/// One target to probe.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub addr: IpAddr,
    /// The caller's name for it, e.g. `namespace/vm`.
    pub label: String,
    pub rate: ProbeRate,
    /// Switch to this rate once reachability is sustained (`None`: keep `rate`).
    pub rate_after_sustained: Option<ProbeRate>,
    /// Bound on probes sent to this target.
    pub max_probes: u64,
    /// Bound on how long this target is probed.
    pub max_duration: Duration,
    /// Delay of the first probe after `add_target` (0: at once). Spreads the phases of many
    /// targets added together so their probes do not leave in one burst per interval.
    pub first_probe_delay: Duration,
}

impl TargetSpec {
    /// 100/s until sustained, then 10/s; at most 30 minutes and 200,000 probes.
    pub fn new(addr: IpAddr, label: impl Into<String>) -> TargetSpec {
        TargetSpec {
            addr,
            label: label.into(),
            rate: ProbeRate::CONVERGING,
            rate_after_sustained: Some(ProbeRate::STEADY),
            max_probes: 200_000,
            max_duration: Duration::from_secs(30 * 60),
            first_probe_delay: Duration::ZERO,
        }
    }
}

/// The prober's reports at one instant.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSnapshot {
    #[serde(serialize_with = "crate::ser::stamp", rename = "atNs")]
    pub at: MonoStamp,
    pub targets: BTreeMap<IpAddr, TargetReport>,
    pub stats: ProberStats,
}

/// Counts over all targets (see [`IcmpProber::progress`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeProgress {
    pub targets: usize,
    /// Targets that answered at least once.
    pub answered: usize,
    /// Targets whose reachability is sustained.
    pub sustained: usize,
}

impl ProbeSnapshot {
    /// All targets' RTTs in one histogram (µs), or `None` when no target was answered.
    pub fn merged_rtt(&self) -> Option<Histogram<u32>> {
        let mut merged: Option<Histogram<u32>> = None;
        for report in self
            .targets
            .values()
            .filter(|r| !r.rtt_histogram.is_empty())
        {
            match &mut merged {
                // Every histogram has the same bounds, so adding cannot fail; skip if it did.
                Some(h) => {
                    let _ = h.add(&report.rtt_histogram);
                }
                None => merged = Some(report.rtt_histogram.clone()),
            }
        }
        merged
    }

    /// Targets that never answered, with the reason.
    pub fn never_reachable(&self) -> Vec<(IpAddr, &str)> {
        self.targets
            .iter()
            .filter_map(|(addr, r)| r.first_reply.missing_reason().map(|why| (*addr, why)))
            .collect()
    }
}

#[derive(Debug)]
struct State {
    streams: HashMap<u32, Stream>,
    by_addr: HashMap<Ipv4Addr, u32>,
    /// (due, target id, generation)
    schedule: BinaryHeap<Reverse<(MonoStamp, u32, u32)>>,
    next_id: u32,
    send_lag_us: Histogram<u32>,
    probes_sent: u64,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    /// A byte sent here wakes the event loop (a target added, a rate changed, stop).
    wake_tx: UnixDatagram,
    wake_rx: UnixDatagram,
    stop: AtomicBool,
    clock: RunClock,
    config: ProberConfig,
    limits: StreamLimits,
    socket: IcmpSocket,
    nonce: u32,
    identifier: u16,
    run_deadline: MonoStamp,
    socket_drops: AtomicU64,
    foreign: AtomicU64,
    mismatched: AtomicU64,
    recv_errors: AtomicU64,
    /// Replies and errors already stamped by the event loop, waiting to be recorded (the loop
    /// stamps and queues before it takes the state lock).
    arrivals: Mutex<Vec<Arrival>>,
    /// Why the event loop runs at normal priority, if it does.
    normal_priority: Mutex<Option<String>>,
}

impl Shared {
    fn wake(&self) {
        // A full buffer means a wake-up is already pending.
        let _ = self.wake_tx.send(&[1]);
    }

    fn queue(&self, local: &mut Vec<Arrival>) {
        if !local.is_empty() {
            let mut queue = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
            queue.append(local);
        }
    }

    /// Locks the state and records every queued arrival first, so no decision (a timeout, a
    /// report) is taken on stale data.
    fn lock(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a thread panicked mid-update; the counters are still usable.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.apply_arrivals(&mut state);
        state
    }

    fn apply_arrivals(&self, state: &mut State) {
        let pending = {
            let mut queue = self.arrivals.lock().unwrap_or_else(|p| p.into_inner());
            if queue.is_empty() {
                return;
            }
            std::mem::take(&mut *queue)
        };
        for arrival in pending {
            match arrival {
                Arrival::Reply { source, tag, at } => {
                    let Some(stream) = state.streams.get_mut(&tag.target_id) else {
                        continue;
                    };
                    if stream.addr != source {
                        self.mismatched.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if stream.on_reply(tag.probe_no, at, self.limits.timeout) == ReplyKind::Unknown
                    {
                        self.mismatched.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Arrival::Error { source, error } => {
                    let Some(stream) = state.streams.get_mut(&error.tag.target_id) else {
                        continue;
                    };
                    if stream.addr.octets() != error.original_destination {
                        self.mismatched.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let reason = format!(
                        "{} from {source}",
                        packet::describe_error(error.icmp_type, error.code)
                    );
                    stream.on_error(error.tag.probe_no, reason);
                }
            }
        }
    }
}

/// The running prober. Dropping it stops its thread (without a report); call
/// [`IcmpProber::finish`] to get the final reports.
#[derive(Debug)]
pub struct IcmpProber {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

static NONCE_COUNTER: AtomicU32 = AtomicU32::new(0);

impl IcmpProber {
    /// Opens the socket in `config.netns` and starts the event-loop thread.
    pub fn start(clock: RunClock, config: ProberConfig) -> Result<IcmpProber, ProbeError> {
        let timeout_cap = Duration::from_micros(stream::RTT_HISTOGRAM_MAX_US);
        if config.timeout.is_zero() || config.timeout > timeout_cap {
            return Err(ProbeError::InvalidConfig {
                why: format!(
                    "timeout {:?} must be in (0, {timeout_cap:?}]",
                    config.timeout
                ),
            });
        }
        if config.sustain_count == 0 || config.max_targets == 0 {
            return Err(ProbeError::InvalidConfig {
                why: "sustain_count and max_targets must be ≥ 1".to_string(),
            });
        }
        let (choice, recv_buffer) = (config.socket, config.recv_buffer);
        let socket = in_netns(config.netns.as_deref(), move || {
            IcmpSocket::open(choice, recv_buffer)
        })?
        .map_err(|source| ProbeError::OpenSocket {
            netns: config.netns.clone().unwrap_or_else(|| "(current)".to_string()),
            hint: "RAW needs root or CAP_NET_RAW; DGRAM needs the GID inside net.ipv4.ping_group_range of that netns",
            source,
        })?;
        let now = clock.now();
        let nonce = std::process::id().rotate_left(16)
            ^ (now.since_anchor().subsec_nanos())
            ^ NONCE_COUNTER.fetch_add(0x9e37_79b9, Ordering::Relaxed);
        let limits = StreamLimits {
            timeout: config.timeout,
            sustain_count: config.sustain_count,
            max_loss_periods: config.max_loss_periods,
        };
        let run_deadline = add(now, config.max_run);
        let (wake_tx, wake_rx) = UnixDatagram::pair()
            .and_then(|(tx, rx)| {
                tx.set_nonblocking(true)?;
                rx.set_nonblocking(true)?;
                Ok((tx, rx))
            })
            .map_err(|source| ProbeError::Thread { source })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                streams: HashMap::new(),
                by_addr: HashMap::new(),
                schedule: BinaryHeap::new(),
                next_id: 1,
                send_lag_us: stream::new_rtt_histogram(),
                probes_sent: 0,
            }),
            wake_tx,
            wake_rx,
            stop: AtomicBool::new(false),
            clock,
            config,
            limits,
            socket,
            nonce,
            identifier: (nonce & 0xffff) as u16,
            run_deadline,
            socket_drops: AtomicU64::new(0),
            foreign: AtomicU64::new(0),
            mismatched: AtomicU64::new(0),
            recv_errors: AtomicU64::new(0),
            arrivals: Mutex::new(Vec::new()),
            normal_priority: Mutex::new(None),
        });
        let looped = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("probe-icmp".to_string())
            .spawn(move || event_loop(&looped))
            .map_err(|source| ProbeError::Thread { source })?;
        Ok(IcmpProber {
            shared,
            thread: Some(thread),
        })
    }

    /// Why the prober's thread runs without real-time priority, if it does (known once the thread
    /// has started, which `start` does not wait for).
    pub fn normal_priority(&self) -> Option<String> {
        self.shared
            .normal_priority
            .lock()
            .ok()
            .and_then(|p| p.clone())
    }

    /// The socket type in use.
    pub fn socket_kind(&self) -> SocketKind {
        self.shared.socket.kind
    }

    /// The forwarding delay threshold in use.
    pub fn timeout(&self) -> Duration {
        self.shared.config.timeout
    }

    /// Starts probing a target now (its first probe is due immediately).
    pub fn add_target(&self, spec: TargetSpec) -> Result<(), ProbeError> {
        let IpAddr::V4(addr) = spec.addr else {
            return Err(ProbeError::Ipv6Unsupported { addr: spec.addr });
        };
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        if state.by_addr.contains_key(&addr) {
            return Err(ProbeError::DuplicateTarget { addr: spec.addr });
        }
        if state.streams.len() >= self.shared.config.max_targets {
            return Err(ProbeError::TooManyTargets {
                max: self.shared.config.max_targets,
            });
        }
        let id = state.next_id;
        state.next_id = state.next_id.wrapping_add(1).max(1);
        let deadline = add(now, spec.max_duration).min(self.shared.run_deadline);
        let stream = Stream::new(
            id,
            addr,
            spec.label,
            now,
            spec.rate,
            spec.rate_after_sustained,
            spec.max_probes,
            deadline,
        );
        state.streams.insert(id, stream);
        state.by_addr.insert(addr, id);
        state
            .schedule
            .push(Reverse((add(now, spec.first_probe_delay), id, 0)));
        drop(state);
        self.shared.wake();
        Ok(())
    }

    /// Changes a target's rate; a faster rate takes effect at once, a slower one after the
    /// probe already scheduled. Also cancels a pending automatic slow-down.
    pub fn set_rate(&self, addr: IpAddr, rate: ProbeRate) -> Result<(), ProbeError> {
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        let id = lookup(&state, addr)?;
        let State {
            streams, schedule, ..
        } = &mut *state;
        let Some(stream) = streams.get_mut(&id) else {
            return Err(ProbeError::UnknownTarget { addr });
        };
        stream.rate = rate;
        stream.rate_after_sustained = None;
        if stream.stopped.is_none() {
            stream.generation = stream.generation.wrapping_add(1);
            let due = stream
                .last_scheduled
                .map(|last| add(last, rate.interval()))
                .unwrap_or(now)
                .max(now);
            schedule.push(Reverse((due, id, stream.generation)));
        }
        drop(state);
        self.shared.wake();
        Ok(())
    }

    /// Stops sending to a target; it stays in reports and keeps resolving probes in flight.
    pub fn stop_target(&self, addr: IpAddr) -> Result<(), ProbeError> {
        let mut state = self.shared.lock();
        let id = lookup(&state, addr)?;
        if let Some(stream) = state.streams.get_mut(&id) {
            stream.stop(StopReason::StoppedByCaller);
        }
        Ok(())
    }

    /// Stops a target, waits (at most the timeout) until its probes in flight are resolved,
    /// and returns its final report. The address can then be added again.
    pub async fn remove_target(&self, addr: IpAddr) -> Result<TargetReport, ProbeError> {
        self.stop_target(addr)?;
        self.wait_resolved(Some(addr)).await;
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        let id = lookup(&state, addr)?;
        state.by_addr.retain(|_, v| *v != id);
        let mut stream = state
            .streams
            .remove(&id)
            .ok_or(ProbeError::UnknownTarget { addr })?;
        stream.advance(now, &self.shared.limits);
        Ok(stream.report(&self.shared.limits))
    }

    /// Reports for every target at this instant; probes still within their timeout are
    /// `pending`, not lost.
    pub fn snapshot(&self) -> ProbeSnapshot {
        let now = self.shared.clock.now();
        let limits = self.shared.limits;
        let ids: Vec<u32> = self.shared.lock().streams.keys().copied().collect();
        let mut targets = BTreeMap::new();
        // A few targets per lock hold, so the sender keeps its schedule while reports are built.
        for chunk in ids.chunks(SNAPSHOT_CHUNK) {
            let mut state = self.shared.lock();
            for id in chunk {
                if let Some(stream) = state.streams.get_mut(id) {
                    stream.advance(now, &limits);
                    targets.insert(IpAddr::V4(stream.addr), stream.report(&limits));
                }
            }
        }
        let stats = self.stats(&self.shared.lock());
        ProbeSnapshot {
            at: now,
            targets,
            stats,
        }
    }

    /// One target's report at this instant.
    pub fn target_report(&self, addr: IpAddr) -> Result<TargetReport, ProbeError> {
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        let id = lookup(&state, addr)?;
        let stream = state
            .streams
            .get_mut(&id)
            .ok_or(ProbeError::UnknownTarget { addr })?;
        stream.advance(now, &self.shared.limits);
        Ok(stream.report(&self.shared.limits))
    }

    /// Counts for a progress display, without building reports.
    pub fn progress(&self) -> ProbeProgress {
        let now = self.shared.clock.now();
        let mut state = self.shared.lock();
        let mut progress = ProbeProgress::default();
        for stream in state.streams.values_mut() {
            stream.advance(now, &self.shared.limits);
            let (answered, sustained) = stream.progress();
            progress.targets += 1;
            progress.answered += usize::from(answered);
            progress.sustained += usize::from(sustained);
        }
        progress
    }

    /// Stops every stream, waits (at most the timeout) for probes in flight, stops the thread
    /// and returns the final reports.
    pub async fn finish(mut self) -> ProbeSnapshot {
        {
            let mut state = self.shared.lock();
            for stream in state.streams.values_mut() {
                stream.stop(StopReason::ProberFinished);
            }
        }
        self.wait_resolved(None).await;
        let snapshot = self.snapshot();
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake();
        if let Some(thread) = self.thread.take() {
            // The loop wakes on the byte `wake` sent; join it off the async runtime.
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
        snapshot
    }

    async fn wait_resolved(&self, addr: Option<IpAddr>) {
        let started = self.shared.clock.now();
        let bound = self.shared.config.timeout + Duration::from_millis(50);
        loop {
            let unresolved = {
                let now = self.shared.clock.now();
                let mut state = self.shared.lock();
                let limits = self.shared.limits;
                let wanted = addr.and_then(|a| lookup(&state, a).ok());
                state
                    .streams
                    .values_mut()
                    .filter(|s| wanted.is_none_or(|id| s.id == id))
                    .any(|s| {
                        s.advance(now, &limits);
                        s.has_unresolved()
                    })
            };
            let waited = self.shared.clock.now().since(started).unwrap_or_default();
            if !unresolved || waited > bound {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn stats(&self, state: &State) -> ProberStats {
        ProberStats {
            socket_kind: self.shared.socket.kind,
            socket_drops: self.shared.socket_drops.load(Ordering::Relaxed),
            foreign_messages: self.shared.foreign.load(Ordering::Relaxed),
            mismatched_replies: self.shared.mismatched.load(Ordering::Relaxed),
            receive_errors: self.shared.recv_errors.load(Ordering::Relaxed),
            send_lag: match RttSummary::of(&state.send_lag_us) {
                Some(s) => Measured::Observed(s),
                None => Measured::missing("no probe sent"),
            },
            probes_sent: state.probes_sent,
            normal_priority: self
                .shared
                .normal_priority
                .lock()
                .ok()
                .and_then(|p| p.clone()),
        }
    }
}

impl Drop for IcmpProber {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.wake();
    }
}

fn lookup(state: &State, addr: IpAddr) -> Result<u32, ProbeError> {
    match addr {
        IpAddr::V4(v4) => state
            .by_addr
            .get(&v4)
            .copied()
            .ok_or(ProbeError::UnknownTarget { addr }),
        IpAddr::V6(_) => Err(ProbeError::UnknownTarget { addr }),
    }
}

/// Targets reported per state-lock hold in a snapshot.
const SNAPSHOT_CHUNK: usize = 32;
/// Probes sent per state-lock hold.
const SEND_BATCH: usize = 64;
/// How often streams that are not being sent to get their timeouts resolved.
const SWEEP_EVERY: Duration = Duration::from_millis(100);

/// `at + d`, saturating (a caller's `Duration::MAX` bound means "no bound", not a panic).
pub(crate) fn add(at: MonoStamp, d: Duration) -> MonoStamp {
    MonoStamp::from_offset(at.since_anchor().saturating_add(d))
}

/// Longest sleep of the event loop (also the sweep period).
const MAX_SLEEP: Duration = SWEEP_EVERY;

/// The one thread: sends due probes, receives and stamps replies, sleeps in `ppoll` until the
/// next probe is due, a message arrives, or it is woken.
fn event_loop(shared: &Shared) {
    // Sends and arrivals are stamped by this thread: on a busy machine a normal thread is stamped
    // whenever it gets a CPU (measured: tens of ms), a real-time one when the packet wakes it.
    if let Err(why) =
        vmbgp_host::priority::raise_current_thread(vmbgp_host::priority::StampingThread::Prober)
        && let Ok(mut note) = shared.normal_priority.lock()
    {
        *note = Some(why);
    }
    let mut send_buf = [0u8; REQUEST_LEN];
    let mut recv_buf = [0u8; 1536];
    let mut drops = 0u32;
    let mut local: Vec<Arrival> = Vec::with_capacity(RECV_BATCH);
    let mut next_sweep = shared.clock.now();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return;
        }
        let failed = drain_socket(shared, &mut recv_buf, &mut drops, &mut local);
        shared.queue(&mut local);
        let (wait, more_due) = {
            let mut state = shared.lock();
            let now = shared.clock.now();
            if now >= next_sweep {
                for stream in state.streams.values_mut() {
                    if stream.stopped.is_none() && now >= shared.run_deadline {
                        stream.stop(StopReason::RunDeadline);
                    }
                    stream.advance(now, &shared.limits);
                }
                next_sweep = add(now, SWEEP_EVERY);
            }
            let sent = send_due(
                shared,
                &mut state,
                now,
                &mut send_buf,
                &mut recv_buf,
                &mut drops,
                &mut local,
            );
            shared.queue(&mut local);
            shared.apply_arrivals(&mut state);
            let now = shared.clock.now();
            let until_due = state
                .schedule
                .peek()
                .map(|Reverse((due, _, _))| due.since(now).unwrap_or_default())
                .unwrap_or(MAX_SLEEP);
            let wait = until_due
                .min(next_sweep.since(now).unwrap_or_default())
                .min(MAX_SLEEP);
            (wait, sent == SEND_BATCH)
        };
        if more_due || wait.is_zero() {
            continue;
        }
        if failed {
            // A socket in a persistent error state would make ppoll return at once: pace the loop.
            std::thread::sleep(wait.min(Duration::from_millis(1)));
            continue;
        }
        sleep_until_event(shared, wait);
    }
}

/// Sends the probes that are due (at most [`SEND_BATCH`]); after each send, reads what has
/// arrived so replies are stamped as soon as possible. Returns how many were sent.
fn send_due(
    shared: &Shared,
    state: &mut State,
    now: MonoStamp,
    send_buf: &mut [u8; REQUEST_LEN],
    recv_buf: &mut [u8],
    drops: &mut u32,
    local: &mut Vec<Arrival>,
) -> usize {
    let mut batch = 0;
    while batch < SEND_BATCH {
        let Some(&Reverse((due, id, generation))) = state.schedule.peek() else {
            break;
        };
        if due > now {
            break;
        }
        state.schedule.pop();
        let State {
            streams,
            schedule,
            send_lag_us,
            probes_sent,
            ..
        } = state;
        let Some(stream) = streams.get_mut(&id) else {
            continue;
        };
        if stream.generation != generation || stream.stopped.is_some() {
            continue;
        }
        if let Some(reason) = stream.limit_reached(now) {
            stream.stop(reason);
            continue;
        }
        stream.advance(now, &shared.limits);
        let interval = stream.rate.interval();
        // Open loop: keep the schedule; when too far behind, skip the missed slots and count them.
        let mut scheduled = due;
        let behind = now.since(due).unwrap_or_default();
        if behind > shared.config.max_send_lag {
            let missed = (behind.as_nanos() / interval.as_nanos().max(1)) as u64;
            stream.schedule_skipped += missed;
            scheduled = add(due, interval * u32::try_from(missed).unwrap_or(u32::MAX));
        }
        let tag = ProbeTag {
            nonce: shared.nonce,
            target_id: id,
            probe_no: stream.next_probe,
        };
        let message = packet::build_echo_request(shared.identifier, tag, send_buf);
        let sent = shared.clock.now();
        let outcome = match shared.socket.send_to(message, stream.addr) {
            Ok(()) => SendOutcome::Sent,
            Err(e) if socket::is_network_refusal(&e) => SendOutcome::NetworkError(e.to_string()),
            Err(e) => SendOutcome::LocalError(e.to_string()),
        };
        stream.record_send(scheduled, sent, outcome);
        *probes_sent += 1;
        let lag_us = sent.since(scheduled).unwrap_or_default().as_micros();
        send_lag_us.saturating_record(u64::try_from(lag_us).unwrap_or(u64::MAX).max(1));
        schedule.push(Reverse((add(scheduled, interval), id, generation)));
        batch += 1;
        let _ = drain_socket(shared, recv_buf, drops, local);
    }
    batch
}

/// Sleeps until the socket is readable, a wake-up byte arrives, or `wait` has passed.
fn sleep_until_event(shared: &Shared, wait: Duration) {
    use nix::poll::{PollFd, PollFlags, ppoll};
    let mut fds = [
        PollFd::new(shared.socket.as_fd(), PollFlags::POLLIN),
        PollFd::new(shared.wake_rx.as_fd(), PollFlags::POLLIN),
    ];
    let timeout = nix::sys::time::TimeSpec::from_duration(wait);
    if ppoll(&mut fds, Some(timeout), None).is_err() {
        // EINTR or a transient failure: the loop simply runs again.
        return;
    }
    let woken = fds[1]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLIN));
    if woken {
        let mut byte = [0u8; 16];
        while shared.wake_rx.recv(&mut byte).is_ok() {}
    }
}

/// Messages read per drain of the socket.
const RECV_BATCH: usize = 64;

#[derive(Debug)]
enum Arrival {
    Reply {
        source: Ipv4Addr,
        tag: ProbeTag,
        at: MonoStamp,
    },
    Error {
        source: Ipv4Addr,
        error: packet::QuotedError,
    },
}

/// Reads everything queued on the socket (at most [`RECV_BATCH`]), stamping each message right
/// after `recvmsg` returns; our replies and errors go to `local`. Returns true when the receive
/// failed (not merely "nothing queued").
fn drain_socket(
    shared: &Shared,
    buf: &mut [u8],
    drops: &mut u32,
    local: &mut Vec<Arrival>,
) -> bool {
    for _ in 0..RECV_BATCH {
        let received = shared.socket.recv(buf, drops);
        let at = shared.clock.now();
        let datagram = match received {
            Ok(Some(d)) => d,
            Ok(None) => break,
            Err(e) => {
                // Log the first failure only; the count is in the stats.
                if shared.recv_errors.fetch_add(1, Ordering::Relaxed) == 0 {
                    tracing::warn!(error = %e, "ICMP receive failed");
                }
                return true;
            }
        };
        match packet::parse_icmp(datagram.icmp) {
            Received::EchoReply(tag) if tag.nonce == shared.nonce => local.push(Arrival::Reply {
                source: datagram.source,
                tag,
                at,
            }),
            Received::Error(error) if error.tag.nonce == shared.nonce => {
                local.push(Arrival::Error {
                    source: datagram.source,
                    error,
                })
            }
            _ => {
                shared.foreign.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    shared
        .socket_drops
        .store(u64::from(*drops), Ordering::Relaxed);
    false
}
