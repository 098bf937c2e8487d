//! The run-wide start: the peering template, then the external router's BGP sessions it brings
//! up, so that no network's convergence includes session establishment.

use super::{Halt, Runner, SESSIONS_TIMEOUT, of_kind};
use crate::kube::FRR_CONFIGURATION;
use crate::measure::bgp_sessions::SessionSource;
use crate::workload::Manifest;

impl Runner<'_> {
    /// Creates the peering template and, where the sessions are visible (BMP or polls) and peers
    /// are expected, waits until every node's session is established; session stability is
    /// observed from then until cleanup removes the peering.
    pub(super) async fn establish_sessions(&mut self, manifests: &[Manifest]) -> Result<(), Halt> {
        self.create_all(&of_kind(manifests, FRR_CONFIGURATION.kind, 0))
            .await?;
        if !self.measurements.sees_sessions() || self.expected_peers == 0 {
            return Ok(());
        }
        let peers = self.expected_peers;
        let what = match self.measurements.sessions.source() {
            SessionSource::Bmp => format!(
                "the external router's BGP sessions with {peers} nodes established (BMP Peer Up)"
            ),
            SessionSource::Poll => format!(
                "the external router's BGP sessions with {peers} nodes established (polled)"
            ),
        };
        self.wait_for(&what, SESSIONS_TIMEOUT, |_, m| m.peers_up() >= peers)
            .await?;
        let up = self.measurements.peers_up();
        self.progress(format!("BGP sessions up: {up} of {peers}"));
        let now = self.clock.now();
        self.measurements.sessions.open(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::{Bench, Recorder, cooperative};
    use super::super::{Halt, Stop};
    use crate::measure::bgp_sessions::SessionSource;

    #[tokio::test(start_paused = true)]
    async fn waits_for_every_nodes_session_after_creating_the_peering() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner
            .establish_sessions(&bench.manifests)
            .await
            .expect("no halt");
        assert!(runner.outcome.execution_errors.is_empty());
        drop(runner);
        let calls = bench.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(calls[0].starts_with("POST frrconfigurations "), "{calls:?}");
        assert_eq!(sink.log().progress, ["BGP sessions up: 2 of 2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn too_few_sessions_expire_the_wait_but_the_run_goes_on() {
        let bench = Bench::new("vm-bgp", cooperative(1));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner
            .establish_sessions(&bench.manifests)
            .await
            .expect("an expired wait is no halt");
        assert!(runner.outcome.wait_expired);
        assert_eq!(
            runner.outcome.execution_errors,
            [
                "timed out after 2m: the external router's BGP sessions with 2 nodes established (polled)"
            ]
        );
        drop(runner);
        assert_eq!(sink.log().progress, ["BGP sessions up: 1 of 2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn unobserved_sessions_are_not_waited_for() {
        let mut bench = Bench::new("vm-bgp", cooperative(0));
        // BMP is off in the bench, so with BMP as the source nothing shows the sessions.
        bench.session_source = SessionSource::Bmp;
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner
            .establish_sessions(&bench.manifests)
            .await
            .expect("no halt");
        assert!(!runner.outcome.wait_expired);
        drop(runner);
        assert_eq!(bench.calls().len(), 1, "the peering is still created");
        assert!(sink.log().progress.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_signal_while_waiting_halts_interrupted() {
        let bench = Bench::new("vm-bgp", cooperative(0));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        super::super::testkit::signal_after(&bench.cancel, std::time::Duration::from_secs(30));
        let halt = runner.establish_sessions(&bench.manifests).await;
        assert!(
            matches!(halt, Err(Halt::Stopped(Stop::Interrupted))),
            "{halt:?}"
        );
        assert!(!runner.outcome.wait_expired);
        assert!(runner.outcome.execution_errors.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_passed_deadline_halts_timed_out_before_creating() {
        let bench = Bench::new("vm-bgp", cooperative(2));
        let mut sink = Recorder::default();
        let mut runner = bench.runner(&mut sink);
        runner.deadline = tokio::time::Instant::now();
        let halt = runner.establish_sessions(&bench.manifests).await;
        assert!(
            matches!(halt, Err(Halt::Stopped(Stop::TimedOut))),
            "{halt:?}"
        );
        drop(runner);
        assert!(
            bench.calls().is_empty(),
            "nothing is created past the deadline"
        );
    }
}
