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
