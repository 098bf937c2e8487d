//! What a probe stream reports about one target (and the prober about itself). Terms follow
//! RFC 6412/7747 as used in `convergence-anchors.md`: first reply (first route convergence
//! instant), sustained reachability (recovery instant + sustained convergence validation),
//! route-specific loss-derived convergence time, loss-of-connectivity period.

use std::net::IpAddr;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;
use vmbgp_host::clock::MonoStamp;

use vmbgp_model::Measured;

use crate::ser;

/// One probe that was answered: when it was due, when it left, when the reply arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeEvent {
    /// The probe's number in its stream (0 = first probe sent to the target).
    pub probe_no: u64,
    /// The instant the open-loop schedule said the probe was due.
    #[serde(serialize_with = "ser::stamp", rename = "scheduledNs")]
    pub scheduled: MonoStamp,
    /// The instant taken just before the send call (≥ `scheduled`; the gap is send lag).
    #[serde(serialize_with = "ser::stamp", rename = "sentNs")]
    pub sent: MonoStamp,
    /// The instant the receiving thread got the reply from the kernel.
    #[serde(serialize_with = "ser::stamp", rename = "receivedNs")]
    pub received: MonoStamp,
}

/// A run of consecutive lost probes (RFC 6412 "loss of connectivity period" when it is the longest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LossPeriod {
    pub first_lost_probe: u64,
    /// Probes lost in this run.
    pub lost: u64,
    /// Scheduled instant of the first lost probe.
    #[serde(serialize_with = "ser::stamp", rename = "startNs")]
    pub start: MonoStamp,
    /// Scheduled instant of the first answered probe after the run; `None` while the run is
    /// still open (the target had not answered again when the report was made).
    #[serde(serialize_with = "ser::opt_stamp", rename = "endNs")]
    pub end: Option<MonoStamp>,
    /// Loss-derived length: the sum of the send intervals of the lost probes (RFC 7747).
    #[serde(serialize_with = "ser::duration", rename = "lossDerivedNs")]
    pub loss_derived: Duration,
    /// Arrival of the last reply before the run (`None`: the run started before any reply).
    #[serde(serialize_with = "ser::opt_stamp", rename = "lastReplyBeforeNs")]
    pub last_reply_before: Option<MonoStamp>,
    /// Arrival of the reply that ended the run.
    #[serde(serialize_with = "ser::opt_stamp", rename = "firstReplyAfterNs")]
    pub first_reply_after: Option<MonoStamp>,
    /// True when the target had never answered before this run (the convergence wait, not an outage).
    pub before_first_reply: bool,
}

/// The longest time between two consecutive replies (arrival to arrival).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplyGap {
    #[serde(serialize_with = "ser::stamp", rename = "fromNs")]
    pub from: MonoStamp,
    #[serde(serialize_with = "ser::stamp", rename = "toNs")]
    pub to: MonoStamp,
    #[serde(serialize_with = "ser::duration", rename = "gapNs")]
    pub gap: Duration,
}

/// RTT quantiles of the answered probes, in microseconds (HDR histogram, 2 significant digits).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RttSummary {
    pub count: u64,
    pub min_us: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl RttSummary {
    /// Quantiles of a histogram, or `None` when it is empty.
    pub fn of(h: &Histogram<u32>) -> Option<RttSummary> {
        if h.is_empty() {
            return None;
        }
        Some(RttSummary {
            count: h.len(),
            min_us: h.min(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            max_us: h.max(),
            mean_us: h.mean(),
        })
    }
}

/// Why a stream stopped sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    /// The target's `max_probes` bound was reached.
    MaxProbes,
    /// The target's `max_duration` bound was reached.
    MaxDuration,
    /// The prober's `max_run` bound was reached.
    RunDeadline,
    /// The caller stopped or removed the target.
    StoppedByCaller,
    /// The prober was finished.
    ProberFinished,
}

/// Everything observed for one target. Counts are plain numbers (0 is a real count); instants
/// and durations that might not exist are [`Measured`].
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TargetReport {
    pub addr: IpAddr,
    /// The caller's label, e.g. `namespace/vm-name`.
    pub label: String,
    #[serde(serialize_with = "ser::stamp", rename = "addedAtNs")]
    pub added_at: MonoStamp,
    /// The probe rate in effect when the report was made.
    pub rate_per_s: u32,
    /// Spacing of probes at that rate: the resolution of first/sustained instants.
    #[serde(serialize_with = "ser::duration", rename = "resolutionNs")]
    pub resolution: Duration,
    pub sent: u64,
    /// Probes whose reply arrived within the timeout.
    pub replied: u64,
    /// Probes without a reply within the timeout, or answered by an ICMP error, or refused by
    /// the local routing table (ENETUNREACH and friends).
    pub lost: u64,
    /// Probes still waiting for a reply or their timeout.
    pub pending: u64,
    /// Replies that arrived after the timeout (their probe counts as lost).
    pub late_replies: u64,
    pub duplicate_replies: u64,
    /// ICMP errors (unreachable, time exceeded) quoting our probes.
    pub icmp_errors: u64,
    /// Sends that failed for local reasons (ENOBUFS, ...): not counted as sent or lost.
    pub local_send_failures: u64,
    /// Scheduled probes skipped because the sender fell too far behind (coordinated omission made visible).
    pub schedule_skipped: u64,
    /// Largest gap between a probe's scheduled and actual send instant.
    #[serde(serialize_with = "ser::duration", rename = "maxSendLagNs")]
    pub max_send_lag: Duration,
    #[serde(serialize_with = "ser::status_form")]
    pub first_reply: Measured<ProbeEvent>,
    #[serde(serialize_with = "ser::status_form")]
    pub last_reply: Measured<ProbeEvent>,
    /// The first probe of the first run of `sustain_count` consecutive answered probes.
    #[serde(serialize_with = "ser::status_form")]
    pub sustained: Measured<ProbeEvent>,
    /// Sum of the intervals of probes lost before `sustained` (RFC 7747 route-specific
    /// loss-derived convergence time, measured from the first probe).
    #[serde(
        serialize_with = "ser::observed_duration",
        rename = "lossDerivedConvergenceNs"
    )]
    pub loss_derived_convergence: Measured<Duration>,
    /// Sum of the intervals of all lost probes.
    #[serde(serialize_with = "ser::observed_duration", rename = "lossTimeTotalNs")]
    pub loss_time_total: Measured<Duration>,
    /// The longest loss period's loss-derived length (0 when probes resolved and none was lost).
    #[serde(
        serialize_with = "ser::observed_duration",
        rename = "lossOfConnectivityNs"
    )]
    pub loss_of_connectivity: Measured<Duration>,
    /// Loss periods in order (the currently open one last, with `end: None`).
    pub loss_periods: Vec<LossPeriod>,
    /// Loss periods not kept because the per-target bound was reached (the longest is still counted).
    pub loss_periods_dropped: u64,
    #[serde(serialize_with = "ser::status_form")]
    pub longest_reply_gap: Measured<ReplyGap>,
    /// lost / (replied + lost).
    #[serde(serialize_with = "ser::status_form")]
    pub loss_ratio: Measured<f64>,
    #[serde(serialize_with = "ser::status_form")]
    pub rtt: Measured<RttSummary>,
    /// RTTs of answered probes in µs; merge them for an overall distribution.
    #[serde(skip)]
    pub rtt_histogram: Histogram<u32>,
    /// The latest error seen for this target (ICMP error or send error), if any.
    pub last_error: Option<String>,
    pub stopped: Option<StopReason>,
}

impl TargetReport {
    /// Loss periods that started at or after `at` (e.g. a migration's start).
    pub fn loss_periods_since(&self, at: MonoStamp) -> impl Iterator<Item = &LossPeriod> {
        self.loss_periods.iter().filter(move |p| p.start >= at)
    }

    /// What happened to reachability since `at` (a migration window), from the kept loss periods.
    pub fn loss_since(&self, at: MonoStamp) -> LossSince {
        let mut summary = LossSince {
            periods: 0,
            lost: 0,
            loss_derived: Duration::ZERO,
            longest: None,
            longest_reply_gap: None,
            recovered_at: None,
            still_losing: false,
        };
        for p in self.loss_periods_since(at) {
            summary.periods += 1;
            summary.lost += p.lost;
            summary.loss_derived += p.loss_derived;
            if summary
                .longest
                .is_none_or(|l: LossPeriod| p.loss_derived > l.loss_derived)
            {
                summary.longest = Some(*p);
            }
            if let (Some(before), Some(after)) = (p.last_reply_before, p.first_reply_after)
                && let Some(gap) = after.since(before)
            {
                summary.longest_reply_gap =
                    Some(summary.longest_reply_gap.map_or(gap, |g| g.max(gap)));
            }
            summary.recovered_at = p.first_reply_after;
            summary.still_losing = p.end.is_none();
        }
        summary
    }
}

/// Loss within a window (see [`TargetReport::loss_since`]). Counts of 0 are observations:
/// the periods are complete for the window unless `loss_periods_dropped` of the report is > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LossSince {
    pub periods: usize,
    pub lost: u64,
    #[serde(serialize_with = "ser::duration", rename = "lossDerivedNs")]
    pub loss_derived: Duration,
    /// The longest loss period in the window (its loss-of-connectivity period).
    pub longest: Option<LossPeriod>,
    /// The longest reply-to-reply gap around a loss period in the window.
    pub longest_reply_gap: Option<Duration>,
    /// Arrival of the reply that ended the last loss period (time to reachability after switch-over).
    #[serde(serialize_with = "ser::opt_stamp", rename = "recoveredAtNs")]
    pub recovered_at: Option<MonoStamp>,
    /// The last loss period had not ended when the report was made.
    pub still_losing: bool,
}

/// Prober-wide figures: what the socket and the sender saw.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProberStats {
    pub socket_kind: super::SocketKind,
    /// Packets the kernel dropped because the socket's receive buffer was full (SO_RXQ_OVFL);
    /// when non-zero, some reported losses are the harness's own.
    pub socket_drops: u64,
    /// ICMP messages received that were not ours (other pingers in the namespace).
    pub foreign_messages: u64,
    /// Replies that named one of our targets but came from another address.
    pub mismatched_replies: u64,
    /// Failed receive calls (other than "nothing queued").
    pub receive_errors: u64,
    /// Send lag (actual − scheduled) over all probes, µs.
    #[serde(serialize_with = "ser::status_form")]
    pub send_lag: Measured<RttSummary>,
    pub probes_sent: u64,
    /// Why the sending and receiving thread runs without real-time priority, if it does (its
    /// send and arrival instants may then include scheduling delay on a busy machine).
    pub normal_priority: Option<String>,
}
