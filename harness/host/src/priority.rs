//! Scheduling of the threads that stamp arrivals (the FIB watchers' and the ICMP prober's
//! readers). They block in `recv` and stamp right after it returns, so the stamp is late by
//! however long the woken thread waits for a CPU; on a loaded 2-core machine that was measured at
//! up to 3–13 ms under normal scheduling. A real-time FIFO priority makes the wake-up immediate.
//! The threads use almost no CPU (they sleep in `recv`), so they cannot starve anything, and the
//! kernel's real-time throttling bounds them anyway. Without the privilege (CAP_SYS_NICE) the
//! thread keeps normal scheduling; the caller reports that.
//!
//! Route observers rank above the prober. A FIFO thread never pre-empts a running thread of its
//! own priority, and the prober runs often (thousands of probes per second): with one priority
//! for all, a route event that woke the harness's and the lab's FIB observers on a 2-core machine
//! while the prober held a CPU left one observer waiting for the prober's next sleep, 1.5 ms late
//! (seen in CI). Observers above the prober take the CPU at once.

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// What a real-time thread stamps, which sets its FIFO priority: above every normal thread, below
/// the kernel's interrupt threads (50) so packet processing is never pre-empted by a stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StampingThread {
    /// A FIB or route observer: wakes rarely, must stamp at once.
    RouteObserver,
    /// The ICMP prober's event loop: runs often, yields to route observers.
    Prober,
}

impl StampingThread {
    pub fn priority(self) -> u8 {
        match self {
            StampingThread::RouteObserver => 20,
            StampingThread::Prober => 10,
        }
    }
}

/// Gives the calling thread real-time FIFO priority for its role; `Err` says why not (the thread
/// then keeps its normal scheduling).
pub fn raise_current_thread(role: StampingThread) -> Result<(), String> {
    let value = ThreadPriorityValue::try_from(role.priority()).map_err(|e| e.to_string())?;
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|e| format!("real-time priority refused ({e:?}); stamps may include scheduling delay"))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use nix::sched::{CpuSet, sched_setaffinity};
    use nix::unistd::Pid;

    use super::*;
    use crate::clock::RunClock;

    #[test]
    fn a_raised_thread_runs_fifo_or_the_refusal_says_why() {
        let (outcome, policy) = std::thread::spawn(|| {
            let outcome = raise_current_thread(StampingThread::RouteObserver);
            (outcome, thread_priority::thread_schedule_policy())
        })
        .join()
        .expect("thread");
        match outcome {
            Ok(()) => assert_eq!(
                policy.ok(),
                Some(ThreadSchedulePolicy::Realtime(
                    RealtimeThreadSchedulePolicy::Fifo
                ))
            ),
            Err(why) => assert!(why.contains("refused"), "{why}"),
        }
    }

    fn pin_to(cpu: usize) {
        let mut set = CpuSet::new();
        set.set(cpu).expect("cpu index");
        sched_setaffinity(Pid::from_raw(0), &set).expect("affinity");
    }

    /// The race CI met: a route observer woken while the prober holds its CPU. On one CPU, a
    /// prober-priority thread spins (bounded: 300 ms, under the kernel's 950 ms real-time budget)
    /// until the observer runs; the observer is woken from the other CPU. Ranked above the prober,
    /// the observer pre-empts it, so the spin ends on the observer's flag, not on its bound. With
    /// one priority for both (the old code) the observer could only run after the spin gave up.
    #[test]
    fn a_woken_route_observer_preempts_a_busy_prober() {
        if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
            eprintln!("skipped: needs two CPUs");
            return;
        }
        let observed = Arc::new(AtomicBool::new(false));
        let waiting = Arc::new(AtomicBool::new(false));
        let spinning = Arc::new(AtomicBool::new(false));
        let (wake, woken) = std::sync::mpsc::channel::<()>();

        let observer = {
            let (observed, waiting) = (observed.clone(), waiting.clone());
            std::thread::spawn(move || {
                pin_to(0);
                let raised = raise_current_thread(StampingThread::RouteObserver);
                waiting.store(true, Ordering::SeqCst);
                raised?;
                let _ = woken.recv();
                observed.store(true, Ordering::SeqCst);
                Ok::<(), String>(())
            })
        };
        let prober = {
            let (observed, waiting, spinning) =
                (observed.clone(), waiting.clone(), spinning.clone());
            std::thread::spawn(move || {
                pin_to(0);
                // The observer must be raised and about to block before the CPU is taken.
                for _ in 0..5_000 {
                    if waiting.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let raised = raise_current_thread(StampingThread::Prober);
                if let Err(why) = raised {
                    spinning.store(true, Ordering::SeqCst);
                    return Err(why);
                }
                spinning.store(true, Ordering::SeqCst);
                let clock = RunClock::start();
                let start = clock.now();
                while !observed.load(Ordering::SeqCst) {
                    if clock.now().since(start) >= Some(Duration::from_millis(300)) {
                        return Ok(false);
                    }
                    std::hint::spin_loop();
                }
                Ok::<bool, String>(true)
            })
        };
        // The waker runs on the other CPU, so the spinning prober cannot hold it back.
        let waker = {
            let spinning = spinning.clone();
            std::thread::spawn(move || {
                pin_to(1);
                for _ in 0..5_000 {
                    if spinning.load(Ordering::SeqCst) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                let _ = wake.send(());
            })
        };
        waker.join().expect("waker");
        let prober = prober.join().expect("prober");
        let observer = observer.join().expect("observer");
        match (prober, observer) {
            (Ok(observer_ran_during_the_spin), Ok(())) => assert!(
                observer_ran_during_the_spin,
                "the route observer waited for the prober's CPU"
            ),
            (Err(why), _) | (_, Err(why)) => {
                assert!(why.contains("refused"), "{why}");
                eprintln!("skipped: {why}");
            }
        }
    }
}
