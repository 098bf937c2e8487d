//! Scheduling of the threads that stamp arrivals (the FIB watcher's and the ICMP prober's
//! readers). They block in `recv` and stamp right after it returns, so the stamp is late by
//! however long the woken thread waits for a CPU; on a loaded 2-core machine that was measured at
//! up to 3–13 ms under normal scheduling. A real-time FIFO priority makes the wake-up immediate.
//! The threads use almost no CPU (they sleep in `recv`), so they cannot starve anything, and the
//! kernel's real-time throttling bounds them anyway. Without the privilege (CAP_SYS_NICE) the
//! thread keeps normal scheduling; the caller reports that.

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

/// FIFO priority of observer threads: above every normal thread, below the kernel's interrupt
/// threads (50) so packet processing is never pre-empted by a stamp.
pub const OBSERVER_PRIORITY: u8 = 10;

/// Gives the calling thread real-time FIFO priority [`OBSERVER_PRIORITY`]; `Err` says why not
/// (the thread then keeps its normal scheduling).
pub fn raise_current_thread() -> Result<(), String> {
    let value = ThreadPriorityValue::try_from(OBSERVER_PRIORITY).map_err(|e| e.to_string())?;
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|e| format!("real-time priority refused ({e:?}); stamps may include scheduling delay"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_thread_runs_fifo_or_the_refusal_says_why() {
        let (outcome, policy) = std::thread::spawn(|| {
            let outcome = raise_current_thread();
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
}
