//! Opens the prober's one ICMP socket (RAW as root, or an unprivileged DGRAM "ping" socket) and
//! does its sends and receives: `socket2` to create and send, `nix::recvmsg` to receive with the
//! kernel's drop counter (SO_RXQ_OVFL). No unsafe code.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, recvmsg, setsockopt, sockopt};
use serde::Serialize;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::packet::strip_ipv4_header;

/// Which socket type to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SocketChoice {
    /// RAW when allowed (root / CAP_NET_RAW), else DGRAM.
    #[default]
    Auto,
    Raw,
    Dgram,
}

/// Which socket type is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SocketKind {
    /// `SOCK_RAW, IPPROTO_ICMP`: needs CAP_NET_RAW; sees every ICMP message in the namespace.
    Raw,
    /// `SOCK_DGRAM, IPPROTO_ICMP`: needs the GID inside `net.ipv4.ping_group_range` (disabled
    /// in a new netns); ICMP errors are not delivered to it.
    Dgram,
}

#[derive(Debug)]
pub(crate) struct IcmpSocket {
    socket: Socket,
    pub kind: SocketKind,
}

/// One received ICMP message (IP header already stripped).
#[derive(Debug)]
pub(crate) struct Datagram<'a> {
    pub source: Ipv4Addr,
    pub icmp: &'a [u8],
}

impl IcmpSocket {
    /// Opens the socket in the calling thread's network namespace.
    pub fn open(choice: SocketChoice, recv_buffer: usize) -> io::Result<IcmpSocket> {
        let (socket, kind) = match choice {
            SocketChoice::Raw => (raw()?, SocketKind::Raw),
            SocketChoice::Dgram => (dgram()?, SocketKind::Dgram),
            SocketChoice::Auto => match raw() {
                Ok(s) => (s, SocketKind::Raw),
                Err(raw_err) => match dgram() {
                    Ok(s) => (s, SocketKind::Dgram),
                    // Report the RAW failure: it is the one that names the missing privilege.
                    Err(_) => return Err(raw_err),
                },
            },
        };
        // As root the receive buffer can exceed net.core.rmem_max; otherwise take what is allowed.
        if setsockopt(&socket, sockopt::RcvBufForce, &recv_buffer).is_err() {
            socket.set_recv_buffer_size(recv_buffer)?;
        }
        setsockopt(&socket, sockopt::RxqOvfl, &1)?;
        socket.set_nonblocking(true)?;
        Ok(IcmpSocket { socket, kind })
    }

    /// Sends one ICMP message to `dest`.
    pub fn send_to(&self, message: &[u8], dest: Ipv4Addr) -> io::Result<()> {
        let addr = SockAddr::from(SocketAddr::V4(SocketAddrV4::new(dest, 0)));
        self.socket.send_to(message, &addr).map(|_| ())
    }

    /// Receives one message without waiting; `Ok(None)` when nothing is queued. `drops` is
    /// updated with the kernel's cumulative drop counter.
    pub fn recv<'b>(&self, buf: &'b mut [u8], drops: &mut u32) -> io::Result<Option<Datagram<'b>>> {
        let mut cmsg = nix::cmsg_space!(u32);
        let flags = MsgFlags::MSG_DONTWAIT;
        let (len, source) = {
            let mut iov = [io::IoSliceMut::new(buf)];
            let msg = match recvmsg::<SockaddrIn>(
                self.socket.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                flags,
            ) {
                Ok(msg) => msg,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(None),
                Err(e) => return Err(io::Error::from(e)),
            };
            if let Ok(cmsgs) = msg.cmsgs() {
                for c in cmsgs {
                    if let ControlMessageOwned::RxqOvfl(n) = c {
                        *drops = n;
                    }
                }
            }
            let source = msg.address.map(|a| a.ip());
            (msg.bytes, source)
        };
        let Some(source) = source else {
            return Ok(Some(Datagram {
                source: Ipv4Addr::UNSPECIFIED,
                icmp: &[],
            }));
        };
        let data = &buf[..len.min(buf.len())];
        let icmp = match self.kind {
            SocketKind::Raw => strip_ipv4_header(data).unwrap_or(&[]),
            SocketKind::Dgram => data,
        };
        Ok(Some(Datagram { source, icmp }))
    }
}

impl AsFd for IcmpSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

fn raw() -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))
}

fn dgram() -> io::Result<Socket> {
    Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::ICMPV4))
}

/// Sorts a send error: network refusals are lost probes, local resource errors are not.
pub(crate) fn is_network_refusal(err: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        err.raw_os_error().map(Errno::from_raw),
        Some(
            Errno::ENETUNREACH
                | Errno::EHOSTUNREACH
                | Errno::ENETDOWN
                | Errno::EHOSTDOWN
                | Errno::EPERM
                | Errno::EACCES
                | Errno::ECONNREFUSED
        )
    )
}
