//! Benchmark: N targets (default 1,000 /32s on lo of a peer netns) probed at R/s each (default
//! 100) for D seconds (default 10) from a netns this program creates; prints probes, loss, socket
//! drops, send lag, harness CPU (user+system over wall) and peak RSS. Needs root.
//!
//! `cargo run --release -p vmbgp-probe --example probe_scale -- [targets] [rate] [seconds]`
//!
//! With `PROBE_BENCH_SPLIT=1` the process is pinned to CPU 0 and the veth receive processing of
//! both namespaces is steered to CPU 1 (RPS). On this one-machine setup the far namespace's echo
//! replies would otherwise run inside the prober's send calls and be billed to it; on a real
//! host they run on the VMs, and received packets are processed in NIC interrupt context. The
//! split run therefore shows the prober's own cost: user time plus its send/receive syscalls.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};
use vmbgp_host::clock::RunClock;
use vmbgp_probe::icmp::{IcmpProber, ProbeRate, ProberConfig, RttSummary, TargetSpec};

fn target(i: u32) -> Ipv4Addr {
    // 198.19.16.0 onwards: inside the VM range routed to the far side.
    let base = u32::from(Ipv4Addr::new(198, 19, 16, 1));
    Ipv4Addr::from(base + i)
}

/// (user, system) CPU seconds of this process.
fn cpu_seconds() -> (f64, f64) {
    let usage = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    (t(usage.user_time()), t(usage.system_time()))
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numeric arguments"))
        .collect();
    let targets = args.first().copied().unwrap_or(1000) as u32;
    let rate = args.get(1).copied().unwrap_or(100) as u32;
    let seconds = args.get(2).copied().unwrap_or(10);

    let split = std::env::var_os("PROBE_BENCH_SPLIT").is_some_and(|v| v == "1");
    if split {
        let mut cpus = nix::sched::CpuSet::new();
        cpus.set(0).expect("cpu 0");
        nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &cpus).expect("pin to CPU 0");
    }
    let pair = common::NetnsPair::new("bench");
    if split {
        for (netns, dev) in [(&pair.near, "p0"), (&pair.far, "p1")] {
            let status = Command::new("ip")
                .args(["netns", "exec", netns, "sh", "-c"])
                .arg(format!(
                    "echo 2 > /sys/class/net/{dev}/queues/rx-0/rps_cpus"
                ))
                .status()
                .expect("ip netns exec");
            assert!(status.success(), "setting rps_cpus on {dev} failed");
        }
    }
    let mut batch = String::new();
    for i in 0..targets {
        batch.push_str(&format!("addr add {}/32 dev lo\n", target(i)));
    }
    let mut child = Command::new("ip")
        .args(["-n", &pair.far, "-batch", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("ip -batch");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(batch.as_bytes())
        .expect("write batch");
    assert!(
        child.wait().expect("ip").success(),
        "adding addresses failed"
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let clock = RunClock::start();
        let prober = IcmpProber::start(
            clock,
            ProberConfig {
                netns: Some(pair.near.clone()),
                ..ProberConfig::default()
            },
        )
        .expect("prober");
        let rss_before = peak_rss_mb();
        let cpu0 = cpu_seconds();
        let t0 = clock.now();
        let per_second = ProbeRate::per_second(rate).expect("rate");
        for i in 0..targets {
            let mut spec = TargetSpec::new(IpAddr::V4(target(i)), format!("bench/vm-{i}"));
            spec.rate = per_second;
            spec.rate_after_sustained = None;
            spec.first_probe_delay = per_second.interval() * i / targets;
            prober.add_target(spec).expect("add target");
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let cpu1 = cpu_seconds();
        let t1 = clock.now();
        let snapshot = prober.finish().await;
        let wall = t1.since(t0).expect("ordered").as_secs_f64();
        let (mut sent, mut replied, mut lost, mut skipped) = (0u64, 0u64, 0u64, 0u64);
        let mut all = None::<hdrhistogram::Histogram<u32>>;
        let mut never = 0;
        for r in snapshot.targets.values() {
            sent += r.sent;
            replied += r.replied;
            lost += r.lost;
            skipped += r.schedule_skipped;
            never += usize::from(!r.first_reply.is_observed());
            match &mut all {
                Some(h) => h.add(&r.rtt_histogram).expect("same bounds"),
                None => all = Some(r.rtt_histogram.clone()),
            }
        }
        let rtt = all.as_ref().and_then(RttSummary::of);
        println!("targets            {targets}");
        println!("split accounting   {split}");
        println!("rate per target    {rate}/s");
        println!("duration           {wall:.2} s");
        println!("socket             {:?}", snapshot.stats.socket_kind);
        println!("probes sent        {sent} ({:.0}/s)", sent as f64 / wall);
        println!("replied            {replied}");
        println!("lost               {lost}");
        println!("never reachable    {never}");
        println!("schedule skipped   {skipped}");
        println!("socket drops       {}", snapshot.stats.socket_drops);
        println!("send lag (µs)      {:?}", snapshot.stats.send_lag.observed());
        println!("rtt (µs)           {rtt:?}");
        let (user, system) = (cpu1.0 - cpu0.0, cpu1.1 - cpu0.1);
        println!(
            "harness CPU        {:.3} cores ({user:.2} s user + {system:.2} s system over {wall:.2} s)",
            (user + system) / wall,
        );
        println!(
            "CPU per probe      {:.2} µs user, {:.2} µs system (system includes the far netns's echo replies, run in our send path)",
            user * 1e6 / sent.max(1) as f64,
            system * 1e6 / sent.max(1) as f64
        );
        println!("peak RSS           {:.1} MB (before targets {rss_before:.1} MB)", peak_rss_mb());
    });
}
