//! Reads the kernel's `TCP_INFO` for a socket: bytes acknowledged, retransmissions, RTT.
//!
//! This is the crate's only `unsafe` code, one `getsockopt` call. Why it is needed: no
//! maintained crate offers a safe, non-panicking `TCP_INFO` read. `nix`'s generic struct getter
//! asserts that the kernel returned exactly `size_of::<libc::tcp_info>()` bytes and panics
//! otherwise, which happens whenever the running kernel's struct is older (shorter) than the
//! libc crate's (e.g. RHEL 9's 5.14 on a real worker node); `tcp-info-sys` needs bindgen and
//! libclang at build time and also trusts the size. Here the kernel writes into a zeroed byte
//! buffer and every field is read only if the returned length covers it.

use std::io;
use std::mem::{offset_of, size_of};
use std::os::fd::{AsFd, AsRawFd};

use nix::libc;

/// The fields the throughput measurement uses; `None` when the kernel did not provide one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TcpInfo {
    /// `tcpi_bytes_acked` (kernel ≥ 4.1).
    pub bytes_acked: Option<u64>,
    /// `tcpi_total_retrans`: segments retransmitted over the connection's life.
    pub total_retrans: Option<u32>,
    /// `tcpi_bytes_retrans` (kernel ≥ 4.19).
    pub bytes_retrans: Option<u64>,
    /// `tcpi_rtt`: smoothed RTT in µs.
    pub rtt_us: Option<u32>,
    /// `tcpi_snd_cwnd` in segments.
    pub snd_cwnd: Option<u32>,
    /// `tcpi_state` (1 = ESTABLISHED).
    pub state: Option<u8>,
}

/// Enough room for any kernel's `struct tcp_info` (about 250 bytes in 6.x).
const BUFFER: usize = 512;

#[allow(unsafe_code)]
fn getsockopt_tcp_info(fd: &impl AsFd) -> io::Result<([u8; BUFFER], usize)> {
    let mut buf = [0u8; BUFFER];
    let mut len = BUFFER as libc::socklen_t;
    // SAFETY: `buf` is a live, writable, initialized buffer of `len` bytes and `len` is a valid
    // socklen_t; the kernel writes at most `len` bytes into it and stores the length written
    // back into `len`. The fd is borrowed for the duration of the call.
    let rc = unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            libc::SOL_TCP,
            libc::TCP_INFO,
            buf.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((buf, (len as usize).min(BUFFER)))
}

/// Reads `TCP_INFO` from a TCP socket.
pub fn read(fd: &impl AsFd) -> io::Result<TcpInfo> {
    let (buf, len) = getsockopt_tcp_info(fd)?;
    Ok(parse(&buf[..len]))
}

fn field<const N: usize>(bytes: &[u8], offset: usize) -> Option<[u8; N]> {
    bytes.get(offset..offset + N)?.try_into().ok()
}

/// Decodes the fields covered by `bytes` (the length the kernel returned).
pub(crate) fn parse(bytes: &[u8]) -> TcpInfo {
    macro_rules! get {
        ($name:ident, $ty:ty) => {
            field::<{ size_of::<$ty>() }>(bytes, offset_of!(libc::tcp_info, $name))
                .map(<$ty>::from_ne_bytes)
        };
    }
    TcpInfo {
        bytes_acked: get!(tcpi_bytes_acked, u64),
        total_retrans: get!(tcpi_total_retrans, u32),
        bytes_retrans: get!(tcpi_bytes_retrans, u64),
        rtt_us: get!(tcpi_rtt, u32),
        snd_cwnd: get!(tcpi_snd_cwnd, u32),
        state: get!(tcpi_state, u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_beyond_the_returned_length_are_none() {
        let mut bytes = vec![0u8; 256];
        let acked = offset_of!(libc::tcp_info, tcpi_bytes_acked);
        bytes[acked..acked + 8].copy_from_slice(&12345u64.to_ne_bytes());
        let retrans = offset_of!(libc::tcp_info, tcpi_total_retrans);
        bytes[retrans..retrans + 4].copy_from_slice(&7u32.to_ne_bytes());
        let full = parse(&bytes);
        assert_eq!(full.bytes_acked, Some(12345));
        assert_eq!(full.total_retrans, Some(7));
        // An old kernel that stops before tcpi_bytes_acked.
        let old = parse(&bytes[..acked]);
        assert_eq!(old.bytes_acked, None);
        assert_eq!(old.total_retrans, Some(7));
        assert_eq!(parse(&[]), TcpInfo::default());
    }

    #[test]
    fn a_live_loopback_connection_reports_established_and_acked_bytes() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let reader = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().expect("accept");
            let mut sink = Vec::new();
            conn.read_to_end(&mut sink).expect("read");
            sink.len()
        });
        let mut client = std::net::TcpStream::connect(addr).expect("connect");
        client.write_all(&[7u8; 100_000]).expect("write");
        // Wait until everything is acknowledged (bounded).
        let mut info = read(&client).expect("tcp_info");
        for _ in 0..200 {
            if info.bytes_acked == Some(100_001) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
            info = read(&client).expect("tcp_info");
        }
        assert_eq!(info.state, Some(1), "ESTABLISHED");
        // The SYN counts as one acknowledged byte.
        assert_eq!(info.bytes_acked, Some(100_001));
        assert!(info.total_retrans.is_some());
        drop(client);
        assert_eq!(reader.join().expect("reader"), 100_000);
    }
}
