//! The per-target state of one probe stream: records sends, replies and errors on the hot path
//! into a compact form (a window of unresolved probes, counters, an RTT histogram, the list of
//! loss periods) and builds a [`TargetReport`] from it. Pure bookkeeping over given instants;
//! no I/O and no clock reads, so it is tested with synthetic timelines.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use hdrhistogram::Histogram;
use vmbgp_host::clock::MonoStamp;

use super::ProbeRate;
use super::report::{LossPeriod, ProbeEvent, ReplyGap, RttSummary, StopReason, TargetReport};
use vmbgp_model::Measured;

/// Largest RTT the histograms hold (µs); the prober's timeout is capped to it.
pub(crate) const RTT_HISTOGRAM_MAX_US: u64 = 60_000_000;

/// A fresh RTT histogram: 1 µs .. 60 s, 2 significant digits, u32 counts (~10 KiB).
pub(crate) fn new_rtt_histogram() -> Histogram<u32> {
    // Invariant: the bounds are constants that satisfy hdrhistogram's rules
    // (low ≥ 1, high ≥ 2 × low, sigfig ≤ 5), so creation cannot fail.
    #[allow(clippy::expect_used)]
    Histogram::new_with_bounds(1, RTT_HISTOGRAM_MAX_US, 2).expect("constant histogram bounds")
}

/// Loss periods always kept from the start of a stream; the rest of the bound keeps the latest.
const LOSS_PERIODS_HEAD: usize = 16;

/// Stream-independent settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StreamLimits {
    /// A reply later than this after the send counts as lost (forwarding delay threshold).
    pub timeout: Duration,
    /// Consecutive replies that make reachability "sustained".
    pub sustain_count: u32,
    /// Loss periods kept per target: the first 16 and the most recent rest.
    pub max_loss_periods: usize,
}

/// How a send call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendOutcome {
    Sent,
    /// The network refused it at once (no route, host unreachable, filtered): a lost probe.
    NetworkError(String),
    /// The harness could not send it (buffer full, ...): neither sent nor lost.
    LocalError(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pending,
    Replied(MonoStamp),
    Failed,
    NotSent,
}

#[derive(Debug, Clone, Copy)]
struct InFlight {
    scheduled: MonoStamp,
    sent: MonoStamp,
    interval: Duration,
    outcome: Outcome,
}

#[derive(Debug, Clone, Copy)]
struct OpenLoss {
    first_lost_probe: u64,
    lost: u64,
    start: MonoStamp,
    loss_derived: Duration,
    last_reply_before: Option<MonoStamp>,
    before_first_reply: bool,
}

impl OpenLoss {
    fn as_period(&self, end: Option<(MonoStamp, MonoStamp)>) -> LossPeriod {
        LossPeriod {
            first_lost_probe: self.first_lost_probe,
            lost: self.lost,
            start: self.start,
            end: end.map(|(scheduled, _)| scheduled),
            loss_derived: self.loss_derived,
            last_reply_before: self.last_reply_before,
            first_reply_after: end.map(|(_, received)| received),
            before_first_reply: self.before_first_reply,
        }
    }
}

/// What a reply turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplyKind {
    OnTime,
    Late,
    Duplicate,
    /// A probe number this stream never sent (corrupt or forged): ignored.
    Unknown,
}

/// One target's stream.
#[derive(Debug)]
pub(crate) struct Stream {
    pub id: u32,
    pub addr: Ipv4Addr,
    pub label: String,
    pub added_at: MonoStamp,
    pub rate: ProbeRate,
    pub rate_after_sustained: Option<ProbeRate>,
    /// Bumped whenever the schedule entry in the prober's heap is replaced.
    pub generation: u32,
    pub max_probes: u64,
    pub deadline: MonoStamp,
    pub stopped: Option<StopReason>,
    /// Number of the next probe to send.
    pub next_probe: u64,
    /// Scheduled instant of the last probe sent (the base for the next one).
    pub last_scheduled: Option<MonoStamp>,

    window: VecDeque<InFlight>,
    /// Probe number of `window[0]`.
    window_start: u64,

    sent: u64,
    replied: u64,
    lost: u64,
    late_replies: u64,
    duplicate_replies: u64,
    icmp_errors: u64,
    local_send_failures: u64,
    pub schedule_skipped: u64,
    max_send_lag: Duration,

    first_reply: Option<ProbeEvent>,
    last_reply: Option<ProbeEvent>,
    longest_gap: Option<ReplyGap>,
    /// Arrival of the reply of the latest answered probe resolved in order.
    last_resolved_reply: Option<MonoStamp>,
    run_len: u64,
    run_start: Option<ProbeEvent>,
    sustained: Option<ProbeEvent>,
    loss_time_before_sustained: Duration,
    loss_time_total: Duration,
    open_loss: Option<OpenLoss>,
    /// The first loss periods (the convergence wait is the first one).
    loss_periods_head: Vec<LossPeriod>,
    /// The most recent ones (migrations late in a run); the middle is dropped and counted.
    loss_periods_tail: VecDeque<LossPeriod>,
    loss_periods_dropped: u64,
    longest_loss: Option<LossPeriod>,
    rtt: Histogram<u32>,
    last_error: Option<String>,
}

impl Stream {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: u32,
        addr: Ipv4Addr,
        label: String,
        added_at: MonoStamp,
        rate: ProbeRate,
        rate_after_sustained: Option<ProbeRate>,
        max_probes: u64,
        deadline: MonoStamp,
    ) -> Self {
        Stream {
            id,
            addr,
            label,
            added_at,
            rate,
            rate_after_sustained,
            generation: 0,
            max_probes,
            deadline,
            stopped: None,
            next_probe: 0,
            last_scheduled: None,
            window: VecDeque::new(),
            window_start: 0,
            sent: 0,
            replied: 0,
            lost: 0,
            late_replies: 0,
            duplicate_replies: 0,
            icmp_errors: 0,
            local_send_failures: 0,
            schedule_skipped: 0,
            max_send_lag: Duration::ZERO,
            first_reply: None,
            last_reply: None,
            longest_gap: None,
            last_resolved_reply: None,
            run_len: 0,
            run_start: None,
            sustained: None,
            loss_time_before_sustained: Duration::ZERO,
            loss_time_total: Duration::ZERO,
            open_loss: None,
            loss_periods_head: Vec::new(),
            loss_periods_tail: VecDeque::new(),
            loss_periods_dropped: 0,
            longest_loss: None,
            rtt: new_rtt_histogram(),
            last_error: None,
        }
    }

    /// Why the stream must not send another probe at `now`, if it must not.
    pub fn limit_reached(&self, now: MonoStamp) -> Option<StopReason> {
        if let Some(reason) = self.stopped {
            return Some(reason);
        }
        if self.next_probe >= self.max_probes {
            return Some(StopReason::MaxProbes);
        }
        if now >= self.deadline {
            return Some(StopReason::MaxDuration);
        }
        None
    }

    /// Records a probe handed to the socket (or refused by it). Returns its number.
    pub fn record_send(
        &mut self,
        scheduled: MonoStamp,
        sent: MonoStamp,
        outcome: SendOutcome,
    ) -> u64 {
        let probe_no = self.next_probe;
        self.next_probe += 1;
        self.last_scheduled = Some(scheduled);
        let lag = sent.since(scheduled).unwrap_or(Duration::ZERO);
        self.max_send_lag = self.max_send_lag.max(lag);
        let outcome = match outcome {
            SendOutcome::Sent => {
                self.sent += 1;
                Outcome::Pending
            }
            SendOutcome::NetworkError(reason) => {
                self.sent += 1;
                self.last_error = Some(format!("send failed: {reason}"));
                Outcome::Failed
            }
            SendOutcome::LocalError(reason) => {
                self.local_send_failures += 1;
                self.last_error = Some(format!("local send failure: {reason}"));
                Outcome::NotSent
            }
        };
        if self.window.is_empty() {
            self.window_start = probe_no;
        }
        self.window.push_back(InFlight {
            scheduled,
            sent,
            interval: self.rate.interval(),
            outcome,
        });
        probe_no
    }

    fn slot(&mut self, probe_no: u64) -> Option<&mut InFlight> {
        let index = usize::try_from(probe_no.checked_sub(self.window_start)?).ok()?;
        self.window.get_mut(index)
    }

    /// Records a reply that arrived at `received`.
    pub fn on_reply(&mut self, probe_no: u64, received: MonoStamp, timeout: Duration) -> ReplyKind {
        if probe_no >= self.next_probe {
            return ReplyKind::Unknown;
        }
        let Some(slot) = self.slot(probe_no) else {
            // Already resolved and dropped from the window: it was either answered (duplicate)
            // or timed out (late). We cannot tell which any more; count it as late, which is
            // the only way a resolved probe's reply can be new.
            self.late_replies += 1;
            return ReplyKind::Late;
        };
        match slot.outcome {
            Outcome::Replied(_) => {
                self.duplicate_replies += 1;
                ReplyKind::Duplicate
            }
            Outcome::Failed | Outcome::NotSent => {
                self.late_replies += 1;
                ReplyKind::Late
            }
            Outcome::Pending => {
                let rtt = received.since(slot.sent).unwrap_or(Duration::ZERO);
                if rtt > timeout {
                    slot.outcome = Outcome::Failed;
                    self.late_replies += 1;
                    return ReplyKind::Late;
                }
                slot.outcome = Outcome::Replied(received);
                let event = ProbeEvent {
                    probe_no,
                    scheduled: slot.scheduled,
                    sent: slot.sent,
                    received,
                };
                let rtt_us = u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX).max(1);
                self.rtt.saturating_record(rtt_us);
                if self.first_reply.is_none() {
                    self.first_reply = Some(event);
                }
                if let Some(previous) = self.last_reply
                    && let Some(gap) = received.since(previous.received)
                    && self.longest_gap.is_none_or(|g| gap > g.gap)
                {
                    self.longest_gap = Some(ReplyGap {
                        from: previous.received,
                        to: received,
                        gap,
                    });
                }
                if self.last_reply.is_none_or(|l| received >= l.received) {
                    self.last_reply = Some(event);
                }
                ReplyKind::OnTime
            }
        }
    }

    /// Records an ICMP error quoting one of our probes: the probe is lost.
    pub fn on_error(&mut self, probe_no: u64, reason: String) {
        self.icmp_errors += 1;
        self.last_error = Some(reason);
        if let Some(slot) = self.slot(probe_no)
            && slot.outcome == Outcome::Pending
        {
            slot.outcome = Outcome::Failed;
        }
    }

    /// Resolves probes in order: answered ones, failed ones, and pending ones older than the
    /// timeout. Returns the rate to switch to when sustained reachability was just reached and
    /// the target has a `rate_after_sustained`.
    pub fn advance(&mut self, now: MonoStamp, limits: &StreamLimits) -> Option<ProbeRate> {
        let mut new_rate = None;
        while let Some(front) = self.window.front().copied() {
            match front.outcome {
                Outcome::Replied(received) => {
                    let event = ProbeEvent {
                        probe_no: self.window_start,
                        scheduled: front.scheduled,
                        sent: front.sent,
                        received,
                    };
                    if self.resolve_answered(event, limits) {
                        new_rate = self.rate_after_sustained.take();
                    }
                }
                Outcome::Failed => self.resolve_lost(self.window_start, &front),
                Outcome::Pending => {
                    let expired = now
                        .since(front.sent)
                        .is_some_and(|age| age >= limits.timeout);
                    if !expired {
                        break;
                    }
                    self.resolve_lost(self.window_start, &front);
                }
                Outcome::NotSent => {}
            }
            self.window.pop_front();
            self.window_start += 1;
        }
        if let Some(rate) = new_rate {
            self.rate = rate;
        }
        new_rate
    }

    /// Returns true when this reply completed the sustained run.
    fn resolve_answered(&mut self, event: ProbeEvent, limits: &StreamLimits) -> bool {
        self.replied += 1;
        self.last_resolved_reply = Some(event.received);
        if let Some(open) = self.open_loss.take() {
            self.close_loss(
                open.as_period(Some((event.scheduled, event.received))),
                limits,
            );
        }
        self.run_len += 1;
        if self.run_len == 1 {
            self.run_start = Some(event);
        }
        if self.sustained.is_none() && self.run_len >= u64::from(limits.sustain_count) {
            self.sustained = self.run_start;
            return true;
        }
        false
    }

    fn resolve_lost(&mut self, probe_no: u64, probe: &InFlight) {
        self.lost += 1;
        self.loss_time_total += probe.interval;
        if self.sustained.is_none() {
            self.loss_time_before_sustained += probe.interval;
        }
        self.run_len = 0;
        self.run_start = None;
        match &mut self.open_loss {
            Some(open) => {
                open.lost += 1;
                open.loss_derived += probe.interval;
            }
            None => {
                self.open_loss = Some(OpenLoss {
                    first_lost_probe: probe_no,
                    lost: 1,
                    start: probe.scheduled,
                    loss_derived: probe.interval,
                    last_reply_before: self.last_resolved_reply,
                    before_first_reply: self.replied == 0,
                });
            }
        }
    }

    fn close_loss(&mut self, period: LossPeriod, limits: &StreamLimits) {
        if self
            .longest_loss
            .is_none_or(|l| period.loss_derived > l.loss_derived)
        {
            self.longest_loss = Some(period);
        }
        let head_cap = limits.max_loss_periods.min(LOSS_PERIODS_HEAD);
        let tail_cap = limits.max_loss_periods - head_cap;
        if self.loss_periods_head.len() < head_cap {
            self.loss_periods_head.push(period);
            return;
        }
        if tail_cap == 0 {
            self.loss_periods_dropped += 1;
            return;
        }
        if self.loss_periods_tail.len() == tail_cap {
            self.loss_periods_tail.pop_front();
            self.loss_periods_dropped += 1;
        }
        self.loss_periods_tail.push_back(period);
    }

    /// Stops sending (the stream keeps resolving what is in flight).
    pub fn stop(&mut self, reason: StopReason) {
        if self.stopped.is_none() {
            self.stopped = Some(reason);
        }
    }

    /// Whether any reply arrived / reachability is sustained (cheap, for progress counts).
    pub fn progress(&self) -> (bool, bool) {
        (self.first_reply.is_some(), self.sustained.is_some())
    }

    /// Whether probes are still waiting for a reply or timeout.
    pub fn has_unresolved(&self) -> bool {
        self.window.iter().any(|p| p.outcome == Outcome::Pending)
    }

    pub fn report(&self, limits: &StreamLimits) -> TargetReport {
        let pending = self
            .window
            .iter()
            .filter(|p| p.outcome == Outcome::Pending)
            .count() as u64;
        let resolved = self.replied + self.lost;
        let never_replied = || {
            let mut why = if self.sent == 0 {
                "no probe was sent".to_string()
            } else {
                format!(
                    "no echo reply within {:?} to any of {} probes sent",
                    limits.timeout, self.sent
                )
            };
            if let Some(err) = &self.last_error {
                why.push_str(&format!("; last error: {err}"));
            }
            why
        };
        let first_reply = match self.first_reply {
            Some(e) => Measured::Observed(e),
            None => Measured::missing(never_replied()),
        };
        let last_reply = match self.last_reply {
            Some(e) => Measured::Observed(e),
            None => Measured::missing(never_replied()),
        };
        let sustained = match self.sustained {
            Some(e) => Measured::Observed(e),
            None if self.first_reply.is_none() => Measured::missing(never_replied()),
            None => Measured::missing(format!(
                "never {} consecutive replies (longest current run {})",
                limits.sustain_count, self.run_len
            )),
        };
        let loss_derived_convergence = match self.sustained {
            Some(_) => Measured::Observed(self.loss_time_before_sustained),
            None => Measured::missing(
                sustained
                    .missing_reason()
                    .map(|r| format!("sustained reachability not reached: {r}"))
                    .unwrap_or_default(),
            ),
        };
        let nothing_resolved = || {
            if self.sent == 0 {
                "no probe was sent".to_string()
            } else {
                "no probe resolved yet (all still within the timeout)".to_string()
            }
        };
        let mut loss_periods = self.loss_periods_head.clone();
        loss_periods.extend(self.loss_periods_tail.iter().copied());
        let mut longest = self.longest_loss;
        if let Some(open) = &self.open_loss {
            let period = open.as_period(None);
            if longest.is_none_or(|l| period.loss_derived > l.loss_derived) {
                longest = Some(period);
            }
            loss_periods.push(period);
        }
        let (loss_time_total, loss_of_connectivity, loss_ratio) = if resolved == 0 {
            (
                Measured::missing(nothing_resolved()),
                Measured::missing(nothing_resolved()),
                Measured::missing(nothing_resolved()),
            )
        } else {
            (
                Measured::Observed(self.loss_time_total),
                Measured::Observed(longest.map_or(Duration::ZERO, |l| l.loss_derived)),
                Measured::Observed(self.lost as f64 / resolved as f64),
            )
        };
        let longest_reply_gap = match self.longest_gap {
            Some(g) => Measured::Observed(g),
            None => Measured::missing(format!("fewer than two replies ({})", self.rtt.len())),
        };
        let rtt = match RttSummary::of(&self.rtt) {
            Some(s) => Measured::Observed(s),
            None => Measured::missing(never_replied()),
        };
        TargetReport {
            addr: IpAddr::V4(self.addr),
            label: self.label.clone(),
            added_at: self.added_at,
            rate_per_s: self.rate.get(),
            resolution: self.rate.interval(),
            sent: self.sent,
            replied: self.replied,
            lost: self.lost,
            pending,
            late_replies: self.late_replies,
            duplicate_replies: self.duplicate_replies,
            icmp_errors: self.icmp_errors,
            local_send_failures: self.local_send_failures,
            schedule_skipped: self.schedule_skipped,
            max_send_lag: self.max_send_lag,
            first_reply,
            last_reply,
            sustained,
            loss_derived_convergence,
            loss_time_total,
            loss_of_connectivity,
            loss_periods,
            loss_periods_dropped: self.loss_periods_dropped,
            longest_reply_gap,
            loss_ratio,
            rtt,
            rtt_histogram: self.rtt.clone(),
            last_error: self.last_error.clone(),
            stopped: self.stopped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> MonoStamp {
        MonoStamp::from_offset(Duration::from_millis(n))
    }

    fn us(n: u64) -> MonoStamp {
        MonoStamp::from_offset(Duration::from_micros(n))
    }

    const LIMITS: StreamLimits = StreamLimits {
        timeout: Duration::from_millis(100),
        sustain_count: 3,
        max_loss_periods: 8,
    };

    fn stream(rate: u32) -> Stream {
        Stream::new(
            1,
            Ipv4Addr::new(198, 19, 0, 10),
            "ns/vm".into(),
            ms(0),
            ProbeRate::per_second(rate).expect("rate"),
            None,
            1_000_000,
            ms(1_000_000),
        )
    }

    /// Sends probes every 10 ms from `from`; `answered(n)` says whether probe n is answered
    /// (1 ms later).
    fn run(s: &mut Stream, count: u64, answered: impl Fn(u64) -> bool) {
        for n in 0..count {
            let at = ms(n * 10);
            let no = s.record_send(at, at, SendOutcome::Sent);
            assert_eq!(no, n);
            if answered(n) {
                assert_eq!(
                    s.on_reply(n, ms(n * 10 + 1), LIMITS.timeout),
                    ReplyKind::OnTime
                );
            }
        }
    }

    #[test]
    fn convergence_after_initial_loss() {
        let mut s = stream(100);
        run(&mut s, 10, |n| n >= 3);
        s.advance(ms(500), &LIMITS);
        let r = s.report(&LIMITS);
        assert_eq!((r.sent, r.replied, r.lost, r.pending), (10, 7, 3, 0));
        assert_eq!(r.first_reply.observed().map(|e| e.probe_no), Some(3));
        assert_eq!(r.first_reply.observed().map(|e| e.received), Some(ms(31)));
        assert_eq!(r.sustained.observed().map(|e| e.probe_no), Some(3));
        assert_eq!(
            r.loss_derived_convergence.observed(),
            Some(&Duration::from_millis(30))
        );
        assert_eq!(r.loss_periods.len(), 1);
        let p = r.loss_periods[0];
        assert!(p.before_first_reply);
        assert_eq!((p.first_lost_probe, p.lost), (0, 3));
        assert_eq!((p.start, p.end), (ms(0), Some(ms(30))));
        assert_eq!(p.last_reply_before, None);
        assert_eq!(p.first_reply_after, Some(ms(31)));
        assert_eq!(r.loss_ratio.observed(), Some(&0.3));
        let rtt = r.rtt.observed().expect("rtt");
        assert_eq!(rtt.count, 7);
        assert!((990..=1010).contains(&rtt.p50_us), "{rtt:?}");
    }

    #[test]
    fn outage_mid_stream_is_one_loss_period_with_its_gap() {
        let mut s = stream(100);
        run(&mut s, 10, |n| !(5..=7).contains(&n));
        s.advance(ms(500), &LIMITS);
        let r = s.report(&LIMITS);
        assert_eq!(r.sustained.observed().map(|e| e.probe_no), Some(0));
        // Observed zero: all loss came after sustained reachability.
        assert_eq!(r.loss_derived_convergence.observed(), Some(&Duration::ZERO));
        assert_eq!(r.loss_periods.len(), 1);
        let p = r.loss_periods[0];
        assert!(!p.before_first_reply);
        assert_eq!((p.first_lost_probe, p.lost), (5, 3));
        assert_eq!((p.start, p.end), (ms(50), Some(ms(80))));
        assert_eq!(p.last_reply_before, Some(ms(41)));
        assert_eq!(p.first_reply_after, Some(ms(81)));
        assert_eq!(
            r.loss_of_connectivity.observed(),
            Some(&Duration::from_millis(30))
        );
        let gap = r.longest_reply_gap.observed().expect("gap");
        assert_eq!(
            (gap.from, gap.to, gap.gap),
            (ms(41), ms(81), Duration::from_millis(40))
        );
    }

    #[test]
    fn never_answered_is_missing_with_a_reason_not_zero() {
        let mut s = stream(100);
        run(&mut s, 5, |_| false);
        s.on_error(4, "ICMP host unreachable from 198.18.0.1".into());
        s.advance(ms(500), &LIMITS);
        let r = s.report(&LIMITS);
        assert_eq!((r.sent, r.replied, r.lost), (5, 0, 5));
        for reason in [
            r.first_reply.missing_reason(),
            r.sustained.missing_reason(),
            r.rtt.missing_reason(),
        ] {
            let reason = reason.expect("missing");
            assert!(reason.contains("no echo reply"), "{reason}");
            assert!(reason.contains("host unreachable"), "{reason}");
        }
        assert!(!r.loss_derived_convergence.is_observed());
        assert!(!r.longest_reply_gap.is_observed());
        // The open loss period is reported, without an end.
        assert_eq!(r.loss_periods.len(), 1);
        assert_eq!(r.loss_periods[0].end, None);
        assert_eq!(
            r.loss_of_connectivity.observed(),
            Some(&Duration::from_millis(50))
        );
    }

    #[test]
    fn nothing_sent_or_resolved_yet_is_missing() {
        let mut s = stream(100);
        let r = s.report(&LIMITS);
        assert_eq!(r.first_reply.missing_reason(), Some("no probe was sent"));
        assert!(!r.loss_ratio.is_observed());
        s.record_send(ms(0), ms(0), SendOutcome::Sent);
        s.advance(ms(50), &LIMITS);
        let r = s.report(&LIMITS);
        assert_eq!(
            (r.pending, r.lost),
            (1, 0),
            "within the timeout a probe is pending"
        );
        assert!(
            r.loss_ratio
                .missing_reason()
                .expect("missing")
                .contains("no probe resolved")
        );
    }

    #[test]
    fn late_and_duplicate_replies_are_counted_not_used() {
        let mut s = stream(100);
        s.record_send(ms(0), ms(0), SendOutcome::Sent);
        s.record_send(ms(10), ms(10), SendOutcome::Sent);
        assert_eq!(s.on_reply(0, ms(150), LIMITS.timeout), ReplyKind::Late);
        assert_eq!(s.on_reply(1, ms(11), LIMITS.timeout), ReplyKind::OnTime);
        assert_eq!(s.on_reply(1, ms(12), LIMITS.timeout), ReplyKind::Duplicate);
        assert_eq!(s.on_reply(9, ms(12), LIMITS.timeout), ReplyKind::Unknown);
        s.advance(ms(500), &LIMITS);
        // After resolution, a reply to a dropped probe is late.
        assert_eq!(s.on_reply(0, ms(600), LIMITS.timeout), ReplyKind::Late);
        let r = s.report(&LIMITS);
        assert_eq!(
            (r.replied, r.lost, r.late_replies, r.duplicate_replies),
            (1, 1, 2, 1)
        );
    }

    #[test]
    fn loss_derived_time_uses_each_lost_probes_own_interval() {
        let mut s = stream(100); // 10 ms
        s.record_send(ms(0), ms(0), SendOutcome::Sent); // lost at 10 ms spacing
        s.rate = ProbeRate::per_second(1000).expect("rate"); // 1 ms
        for n in 1..=4u64 {
            s.record_send(ms(10 + n), ms(10 + n), SendOutcome::Sent); // lost at 1 ms spacing
        }
        for n in 5..=7u64 {
            let at = ms(10 + n);
            s.record_send(at, at, SendOutcome::Sent);
            s.on_reply(n, add_us(at, 100), LIMITS.timeout);
        }
        s.advance(ms(500), &LIMITS);
        let r = s.report(&LIMITS);
        assert_eq!(
            r.loss_derived_convergence.observed(),
            Some(&Duration::from_millis(14))
        );
        assert_eq!(r.loss_periods[0].loss_derived, Duration::from_millis(14));
        assert_eq!(r.resolution, Duration::from_millis(1));
    }

    fn add_us(at: MonoStamp, n: u64) -> MonoStamp {
        MonoStamp::from_offset(at.since_anchor() + Duration::from_micros(n))
    }

    #[test]
    fn send_refusals_are_losses_and_local_failures_are_neutral() {
        let mut s = stream(100);
        s.record_send(
            ms(0),
            ms(0),
            SendOutcome::NetworkError("Network is unreachable".into()),
        );
        s.record_send(
            ms(10),
            ms(10),
            SendOutcome::LocalError("No buffer space".into()),
        );
        s.record_send(ms(20), ms(20), SendOutcome::Sent);
        s.on_reply(2, ms(21), LIMITS.timeout);
        s.advance(ms(30), &LIMITS);
        let r = s.report(&LIMITS);
        assert_eq!(
            (r.sent, r.lost, r.replied, r.local_send_failures),
            (2, 1, 1, 1)
        );
        assert_eq!(r.loss_periods[0].end, Some(ms(20)));
        assert!(r.last_error.expect("error").contains("No buffer space"));
    }

    #[test]
    fn loss_periods_keep_the_first_and_the_latest_and_the_longest() {
        let limits = StreamLimits {
            max_loss_periods: LOSS_PERIODS_HEAD + 2,
            ..LIMITS
        };
        let mut s = stream(100);
        // 16 one-probe outages, then outages of 5, 1, 2, 3 probes, each followed by an answer.
        let mut outages = vec![1usize; LOSS_PERIODS_HEAD];
        outages.extend([5, 1, 2, 3]);
        let mut answered = Vec::new();
        for outage in &outages {
            answered.push(true);
            answered.extend(std::iter::repeat_n(false, *outage));
        }
        answered.push(true);
        run(&mut s, answered.len() as u64, |n| answered[n as usize]);
        s.advance(ms(100_000), &limits);
        let r = s.report(&limits);
        let kept: Vec<u64> = r.loss_periods.iter().map(|p| p.lost).collect();
        let mut expected = vec![1u64; LOSS_PERIODS_HEAD];
        expected.extend([2, 3]);
        assert_eq!(kept, expected, "first 16, then the latest 2");
        assert_eq!(r.loss_periods_dropped, 2);
        assert_eq!(r.lost, 16 + 5 + 1 + 2 + 3);
        // The longest (5 probes) was dropped from the list but is still the loss of connectivity.
        assert_eq!(
            r.loss_of_connectivity.observed(),
            Some(&Duration::from_millis(50))
        );
    }

    #[test]
    fn sustained_reachability_triggers_the_slower_rate_once() {
        let mut s = stream(100);
        s.rate_after_sustained = Some(ProbeRate::per_second(5).expect("rate"));
        for n in 0..3u64 {
            let at = ms(n * 10);
            s.record_send(at, at, SendOutcome::Sent);
            s.on_reply(n, us(n * 10_000 + 50), LIMITS.timeout);
            let changed = s.advance(ms(n * 10 + 1), &LIMITS);
            assert_eq!(changed.is_some(), n == 2, "probe {n}");
        }
        assert_eq!(s.rate.get(), 5);
        assert_eq!(s.advance(ms(100), &LIMITS), None);
    }

    #[test]
    fn limits_stop_the_stream() {
        let mut s = stream(100);
        s.max_probes = 2;
        assert_eq!(s.limit_reached(ms(0)), None);
        s.record_send(ms(0), ms(0), SendOutcome::Sent);
        s.record_send(ms(10), ms(10), SendOutcome::Sent);
        assert_eq!(s.limit_reached(ms(20)), Some(StopReason::MaxProbes));
        let mut s = stream(100);
        s.deadline = ms(5);
        assert_eq!(s.limit_reached(ms(5)), Some(StopReason::MaxDuration));
        s.stop(StopReason::StoppedByCaller);
        s.stop(StopReason::ProberFinished);
        assert_eq!(s.limit_reached(ms(0)), Some(StopReason::StoppedByCaller));
    }

    /// The report's JSON shape is what the harness writes to results/<uuid>/ until the reporters
    /// take over; a change to it must be deliberate (`UPDATE_GOLDEN=1` rewrites the file).
    #[test]
    fn report_json_matches_the_golden_file() {
        let mut s = stream(100);
        run(&mut s, 12, |n| n >= 2 && !(6..=7).contains(&n));
        s.advance(ms(500), &LIMITS);
        let json = serde_json::to_string_pretty(&s.report(&LIMITS)).expect("json") + "\n";
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden/target_report.json");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &json).expect("write golden");
        }
        let golden =
            std::fs::read_to_string(&path).expect("golden file (UPDATE_GOLDEN=1 writes it)");
        assert_eq!(
            json, golden,
            "report JSON changed; rerun with UPDATE_GOLDEN=1 if intended"
        );
    }
}
