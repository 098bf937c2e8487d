//! The built-in TCP throughput sender: connects from the chosen netns to a VM's sink port, writes
//! for a set duration, samples `TCP_INFO` on the way and reports goodput (bytes the peer
//! acknowledged ÷ time connected), retransmissions, the longest stretch without acknowledged
//! progress (TCP survival during migrations) and whether the connection lasted. A failed
//! connection or a cut is part of the report, never an error.

pub mod tcp_info;

use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use nix::libc;
use serde::Serialize;
use vmbgp_host::clock::{MonoStamp, RunClock};

use crate::http_check::tcp_socket_in;
use vmbgp_model::Measured;

use crate::ser;

/// What to send where.
#[derive(Debug, Clone)]
pub struct ThroughputRequest {
    pub netns: Option<String>,
    /// The VM's sink: an address and a port that reads and discards.
    pub target: SocketAddr,
    /// Bind to this source address first (`None`: the kernel's choice).
    pub source: Option<IpAddr>,
    /// How long to send once connected.
    pub duration: Duration,
    pub connect_timeout: Duration,
    /// How often `TCP_INFO` is sampled (the resolution of `longest_stall`).
    pub sample_every: Duration,
    /// Paced stream: at most this many bytes per second since connected (`None`: as fast as the
    /// connection takes). A migration's stream is paced so it shows survival without saturating
    /// the path the loss probes share.
    pub pace_bytes_per_s: Option<u64>,
    /// Stops sending early when set (the caller's window closed before `duration`).
    pub stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    /// Set once the connection is established (a caller starts what the stream watches only then).
    pub connected: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
}

/// How long [`ThroughputRequest::new`] lets a connection take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl ThroughputRequest {
    /// 10 s of sending, 5 s to connect, samples every 100 ms.
    pub fn new(target: SocketAddr) -> ThroughputRequest {
        ThroughputRequest {
            netns: None,
            target,
            source: None,
            duration: Duration::from_secs(10),
            connect_timeout: CONNECT_TIMEOUT,
            sample_every: Duration::from_millis(100),
            pace_bytes_per_s: None,
            stop: None,
            connected: None,
        }
    }
}

/// One `TCP_INFO` sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputSample {
    #[serde(serialize_with = "ser::stamp", rename = "atNs")]
    pub at: MonoStamp,
    /// Data bytes acknowledged so far.
    pub bytes_acked: u64,
    pub total_retrans: u32,
}

/// What one throughput run observed.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ThroughputReport {
    pub target: SocketAddr,
    #[serde(serialize_with = "ser::stamp", rename = "startedNs")]
    pub started: MonoStamp,
    /// When the connection was established (ns since the run anchor).
    #[serde(serialize_with = "ser::status_form")]
    pub connected: Measured<u64>,
    /// When sending stopped and the final `TCP_INFO` was read.
    #[serde(serialize_with = "ser::status_form")]
    pub finished: Measured<u64>,
    /// Bytes handed to the kernel.
    pub bytes_written: u64,
    /// Data bytes the peer acknowledged (`tcpi_bytes_acked` minus the SYN).
    #[serde(serialize_with = "ser::status_form")]
    pub bytes_acked: Measured<u64>,
    /// bytes_acked × 8 ÷ (finished − connected).
    #[serde(serialize_with = "ser::status_form")]
    pub goodput_bits_per_s: Measured<f64>,
    /// `tcpi_total_retrans` at the end.
    #[serde(serialize_with = "ser::status_form")]
    pub retransmits: Measured<u32>,
    #[serde(serialize_with = "ser::status_form")]
    pub bytes_retransmitted: Measured<u64>,
    /// Smoothed RTT at the end, µs.
    #[serde(serialize_with = "ser::status_form")]
    pub smoothed_rtt_us: Measured<u32>,
    /// Longest time between samples without acknowledged progress (resolution `sample_every`).
    #[serde(serialize_with = "ser::observed_duration", rename = "longestStallNs")]
    pub longest_stall: Measured<Duration>,
    /// True when the connection was established and lasted the whole duration without error.
    pub survived: bool,
    /// The error that ended the connection early, if any.
    pub error: Option<String>,
    /// Samples (at most [`MAX_SAMPLES`]).
    pub samples: Vec<ThroughputSample>,
}

/// Bound on samples kept per run.
pub const MAX_SAMPLES: usize = 10_000;
/// Bytes per write call.
const WRITE_CHUNK: usize = 128 * 1024;
/// How long a paced sender waits when it is ahead of its pace.
const PACE_STEP: Duration = Duration::from_millis(2);

fn ns(at: MonoStamp) -> u64 {
    u64::try_from(at.since_anchor().as_nanos()).unwrap_or(u64::MAX)
}

/// Runs the sender on a blocking thread; returns when the duration is over or the connection failed.
pub async fn tcp_throughput(clock: RunClock, req: ThroughputRequest) -> ThroughputReport {
    let target = req.target;
    let started = clock.now();
    match tokio::task::spawn_blocking(move || run_blocking(clock, &req, started)).await {
        Ok(report) => report,
        Err(e) => failed_report(target, started, format!("the sender thread failed: {e}")),
    }
}

fn failed_report(target: SocketAddr, started: MonoStamp, why: String) -> ThroughputReport {
    ThroughputReport {
        target,
        started,
        connected: Measured::missing(why.clone()),
        finished: Measured::missing(why.clone()),
        bytes_written: 0,
        bytes_acked: Measured::missing(why.clone()),
        goodput_bits_per_s: Measured::missing(why.clone()),
        retransmits: Measured::missing(why.clone()),
        bytes_retransmitted: Measured::missing(why.clone()),
        smoothed_rtt_us: Measured::missing(why.clone()),
        longest_stall: Measured::missing(why.clone()),
        survived: false,
        error: Some(why),
        samples: Vec::new(),
    }
}

fn run_blocking(clock: RunClock, req: &ThroughputRequest, started: MonoStamp) -> ThroughputReport {
    let socket = match tcp_socket_in(req.netns.as_deref(), req.target, req.source) {
        Ok(s) => s,
        Err(why) => return failed_report(req.target, started, why),
    };
    if let Err(e) = socket.connect_timeout(&req.target.into(), req.connect_timeout) {
        return failed_report(
            req.target,
            started,
            format!("connect to {} failed: {e}", req.target),
        );
    }
    let connected = clock.now();
    if let Some(flag) = &req.connected {
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    // A blocked write returns after this long so sampling and the deadline are kept.
    let write_timeout = req
        .sample_every
        .clamp(Duration::from_millis(1), Duration::from_millis(100));
    if let Err(e) = socket.set_write_timeout(Some(write_timeout)) {
        return failed_report(
            req.target,
            started,
            format!("cannot set a write timeout: {e}"),
        );
    }
    let deadline = crate::icmp::add(connected, req.duration);
    let chunk = vec![0x5au8; WRITE_CHUNK];
    let mut bytes_written = 0u64;
    let mut error = None;
    let mut samples = Vec::new();
    let mut next_sample = connected;
    let sample = |at: MonoStamp, samples: &mut Vec<ThroughputSample>| {
        if let Ok(info) = tcp_info::read(&socket)
            && samples.len() < MAX_SAMPLES
        {
            samples.push(ThroughputSample {
                at,
                bytes_acked: info.bytes_acked.unwrap_or(0).saturating_sub(1),
                total_retrans: info.total_retrans.unwrap_or(0),
            });
        }
    };
    loop {
        let now = clock.now();
        if now >= next_sample {
            sample(now, &mut samples);
            next_sample = crate::icmp::add(now, req.sample_every);
        }
        let stopped = req
            .stop
            .as_ref()
            .is_some_and(|s| s.load(std::sync::atomic::Ordering::Relaxed));
        if now >= deadline || stopped {
            break;
        }
        let allowed = match req.pace_bytes_per_s {
            None => WRITE_CHUNK,
            Some(rate) => {
                let due = now.since(connected).unwrap_or_default().as_secs_f64() * rate as f64;
                let room = (due as u64).saturating_sub(bytes_written);
                usize::try_from(room)
                    .unwrap_or(WRITE_CHUNK)
                    .min(WRITE_CHUNK)
            }
        };
        if allowed == 0 {
            // Ahead of the pace: wait a little (bounded by the next sample or the deadline).
            std::thread::sleep(PACE_STEP);
            continue;
        }
        match socket.send_with_flags(&chunk[..allowed], libc::MSG_NOSIGNAL) {
            Ok(n) => bytes_written += n as u64,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                error = Some(format!("send failed after {bytes_written} bytes: {e}"));
                break;
            }
        }
    }
    let finished = clock.now();
    let info = tcp_info::read(&socket);
    sample(finished, &mut samples);
    let _ = socket.shutdown(std::net::Shutdown::Write);
    let elapsed = finished.since(connected).unwrap_or_default();
    let (bytes_acked, retransmits, bytes_retransmitted, smoothed_rtt_us) = match &info {
        Ok(info) => (
            info.bytes_acked.map(|b| b.saturating_sub(1)).map_or_else(
                || Measured::missing("kernel TCP_INFO lacks tcpi_bytes_acked (< 4.1)"),
                Measured::Observed,
            ),
            info.total_retrans.map_or_else(
                || Measured::missing("kernel TCP_INFO lacks tcpi_total_retrans"),
                Measured::Observed,
            ),
            info.bytes_retrans.map_or_else(
                || Measured::missing("kernel TCP_INFO lacks tcpi_bytes_retrans (< 4.19)"),
                Measured::Observed,
            ),
            info.rtt_us.map_or_else(
                || Measured::missing("kernel TCP_INFO lacks tcpi_rtt"),
                Measured::Observed,
            ),
        ),
        Err(e) => {
            let why = format!("TCP_INFO could not be read: {e}");
            (
                Measured::missing(why.clone()),
                Measured::missing(why.clone()),
                Measured::missing(why.clone()),
                Measured::missing(why),
            )
        }
    };
    let goodput_bits_per_s = match bytes_acked.observed() {
        Some(acked) if !elapsed.is_zero() => {
            Measured::Observed(*acked as f64 * 8.0 / elapsed.as_secs_f64())
        }
        Some(_) => Measured::missing("no time elapsed while connected"),
        None => Measured::missing(
            bytes_acked
                .missing_reason()
                .unwrap_or("bytes acknowledged unknown")
                .to_string(),
        ),
    };
    ThroughputReport {
        target: req.target,
        started,
        connected: Measured::Observed(ns(connected)),
        finished: Measured::Observed(ns(finished)),
        bytes_written,
        bytes_acked,
        goodput_bits_per_s,
        retransmits,
        bytes_retransmitted,
        smoothed_rtt_us,
        longest_stall: longest_stall(&samples),
        survived: error.is_none(),
        error,
        samples,
    }
}

/// Longest time from a sample that made progress (or the first sample) to the next sample that did.
fn longest_stall(samples: &[ThroughputSample]) -> Measured<Duration> {
    let Some(first) = samples.first() else {
        return Measured::missing("no TCP_INFO sample");
    };
    if samples.len() < 2 {
        return Measured::missing("fewer than two TCP_INFO samples");
    }
    let mut last_progress = *first;
    let mut longest = Duration::ZERO;
    for s in &samples[1..] {
        let since = s.at.since(last_progress.at).unwrap_or_default();
        if s.bytes_acked > last_progress.bytes_acked {
            last_progress = *s;
        } else {
            longest = longest.max(since);
        }
    }
    // Progress between two samples bounds a stall only to the sampling interval, so the longest
    // stall is the time without progress measured between samples.
    Measured::Observed(longest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(ms: u64, acked: u64) -> ThroughputSample {
        ThroughputSample {
            at: MonoStamp::from_offset(Duration::from_millis(ms)),
            bytes_acked: acked,
            total_retrans: 0,
        }
    }

    #[test]
    fn longest_stall_is_the_longest_time_without_progress() {
        let samples = [
            s(0, 0),
            s(100, 10),
            s(200, 10),
            s(300, 10),
            s(400, 20),
            s(500, 20),
        ];
        assert_eq!(
            longest_stall(&samples).observed(),
            Some(&Duration::from_millis(200))
        );
        let steady = [s(0, 0), s(100, 10), s(200, 20)];
        assert_eq!(longest_stall(&steady).observed(), Some(&Duration::ZERO));
        assert!(!longest_stall(&[s(0, 0)]).is_observed());
        assert!(!longest_stall(&[]).is_observed());
    }
}
