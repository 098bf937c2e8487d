//! Data-plane probes from the external router's vantage point: ICMP streams, TCP throughput, the egress echo endpoint.
