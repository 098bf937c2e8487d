//! Guest mode (`LabNetConfig::guest_vms`, migration runs): each VM is its own netns, the guest,
//! holding the VM address on its `eth0`, the far end of a veth whose near end sits in the vmhost of
//! the node the VM runs on. A migration moves that near end to the target node's vmhost
//! (`ip link set … netns …`), as KubeVirt moves a live VM's interface: the guest and its sockets
//! stay as they are, so a TCP stream to the VM can survive the switch-over. Without guest mode a VM
//! address is a /32 on the vmhost's `lo` and a migration moves the address (see [`crate::dataplane`]).
//!
//! The guest routes everything to [`GUEST_GATEWAY`], which every vmhost holds on each guest link
//! (the same /32 on several links, as a CNI's point-to-point veths do); the vmhost routes the VM's
//! /32 to the link and forwards (`ip_forward`, guest mode only).
//!
//! Here: names and `ip -batch` lines only; [`crate::dataplane`] runs them in its rounds.

use std::net::Ipv4Addr;

use crate::names::{GUEST_GATEWAY, LabNames};

/// The guest's interface.
pub const GUEST_LINK: &str = "eth0";

/// The guest netns of VM address `a`.
pub fn guest_netns(names: &LabNames, a: Ipv4Addr) -> String {
    let [b0, b1, b2, b3] = a.octets();
    format!("vmbgp-{}-g-{b0}-{b1}-{b2}-{b3}", names.lab_id())
}

/// The vmhost end of the guest's link: `g` and the address in hex (9 bytes, under IFNAMSIZ).
pub fn host_link(a: Ipv4Addr) -> String {
    format!("g{:08x}", u32::from(a))
}

/// Root-netns line creating the guest netns.
pub(crate) fn create_line(guest: &str) -> String {
    format!("netns add {guest}")
}

/// Vmhost line creating the veth, its far end moved into the guest.
pub(crate) fn link_line(a: Ipv4Addr, guest: &str) -> String {
    format!(
        "link add {} type veth peer name {GUEST_LINK} netns {guest}",
        host_link(a)
    )
}

/// Guest lines: the address on `eth0`, a default route through the gateway.
pub(crate) fn guest_lines(a: Ipv4Addr) -> Vec<String> {
    vec![
        "link set lo up".to_string(),
        format!("addr add {a}/32 dev {GUEST_LINK}"),
        format!("link set {GUEST_LINK} up"),
        format!("route add {GUEST_GATEWAY}/32 dev {GUEST_LINK} scope link"),
        format!("route add default via {GUEST_GATEWAY} dev {GUEST_LINK} onlink"),
    ]
}

/// Vmhost lines attaching the near end (after creation or a move): gateway address, up, the VM's
/// /32 through it.
pub(crate) fn attach_lines(a: Ipv4Addr) -> Vec<String> {
    let link = host_link(a);
    vec![
        format!("addr replace {GUEST_GATEWAY}/32 dev {link}"),
        format!("link set {link} up"),
        format!("route replace {a}/32 dev {link}"),
    ]
}

/// Source-vmhost line moving the near end to the target vmhost netns.
pub(crate) fn move_line(a: Ipv4Addr, target_vmhost: &str) -> String {
    format!("link set {} netns {target_vmhost}", host_link(a))
}

/// Root-netns line deleting the guest (its veth goes with it).
pub(crate) fn delete_line(guest: &str) -> String {
    format!("netns del {guest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernels_limits_and_name_the_address() {
        let names = LabNames::new("hrrun-4242").expect("id");
        let a = Ipv4Addr::new(198, 19, 201, 10);
        assert_eq!(guest_netns(&names, a), "vmbgp-hrrun-4242-g-198-19-201-10");
        assert_eq!(host_link(a), "gc613c90a");
        assert!(host_link(Ipv4Addr::BROADCAST).len() < 16, "IFNAMSIZ");
    }

    #[test]
    fn a_guest_routes_through_the_gateway_its_vmhost_holds() {
        let a = Ipv4Addr::new(198, 19, 201, 10);
        assert_eq!(
            link_line(a, "G"),
            "link add gc613c90a type veth peer name eth0 netns G"
        );
        assert!(guest_lines(a).contains(&"addr add 198.19.201.10/32 dev eth0".to_string()));
        assert!(
            guest_lines(a)
                .contains(&"route add default via 198.18.8.1 dev eth0 onlink".to_string())
        );
        assert_eq!(
            attach_lines(a),
            [
                "addr replace 198.18.8.1/32 dev gc613c90a",
                "link set gc613c90a up",
                "route replace 198.19.201.10/32 dev gc613c90a",
            ]
        );
        assert_eq!(move_line(a, "V2"), "link set gc613c90a netns V2");
    }
}
