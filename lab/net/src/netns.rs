//! The lab's socket helpers for named network namespaces (listeners, connections, sysctls), built on
//! the harness's `vmbgp_host::netns::in_netns` (a fresh thread `setns`es and runs the work there).
//! Sockets keep the namespace they were created in, so a listener or connection made there can be
//! returned and used from anywhere (a tokio task included).

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Path of a named netns (as created by `ip netns add`).
pub fn netns_path(name: &str) -> PathBuf {
    PathBuf::from(vmbgp_host::netns::NETNS_DIR).join(name)
}

/// Runs `work` on a new thread that has entered the named netns, and returns its result.
/// Blocking: call from async code through `tokio::task::spawn_blocking` or use [`in_netns_async`].
pub fn in_netns<T, F>(netns: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let failed = |source| Error::Netns {
        netns: netns.to_string(),
        source,
    };
    vmbgp_host::netns::in_netns(Some(netns), work)
        .map_err(|e| failed(io::Error::other(e)))?
        .map_err(failed)
}

/// [`in_netns`] from async code without blocking the runtime.
pub async fn in_netns_async<T, F>(netns: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let name = netns.to_string();
    tokio::task::spawn_blocking(move || in_netns(&name, work))
        .await
        .map_err(|e| Error::Netns {
            netns: netns.to_string(),
            source: io::Error::other(e.to_string()),
        })?
}

/// A TCP listener bound inside the named netns (non-blocking, ready for `tokio::net::TcpListener::from_std`).
pub fn tcp_listener_in(netns: &str, addr: SocketAddr) -> Result<TcpListener> {
    in_netns(netns, move || {
        let listener = TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })
}

/// A tokio TCP listener bound inside the named netns. Must be called within a tokio runtime.
pub async fn tokio_listener_in(netns: &str, addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let name = netns.to_string();
    let std_listener = tokio::task::spawn_blocking(move || tcp_listener_in(&name, addr))
        .await
        .map_err(|e| Error::Netns {
            netns: netns.to_string(),
            source: io::Error::other(e.to_string()),
        })??;
    tokio::net::TcpListener::from_std(std_listener).map_err(|source| Error::Netns {
        netns: netns.to_string(),
        source,
    })
}

/// A TCP connection made from inside the named netns, optionally from a given local (source) address.
pub async fn tcp_connect_in(
    netns: &str,
    local: Option<SocketAddr>,
    remote: SocketAddr,
    timeout: Duration,
) -> Result<tokio::net::TcpStream> {
    let stream = in_netns_async(netns, move || {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(remote),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        if let Some(local) = local {
            socket.bind(&local.into())?;
        }
        socket.connect_timeout(&remote.into(), timeout)?;
        let stream: TcpStream = socket.into();
        stream.set_nonblocking(true)?;
        stream.set_nodelay(true)?;
        Ok(stream)
    })
    .await?;
    tokio::net::TcpStream::from_std(stream).map_err(|source| Error::Netns {
        netns: netns.to_string(),
        source,
    })
}

/// Writes per-netns sysctls (`/proc/sys/net/...` resolves to the writing thread's namespace).
pub async fn write_sysctls(netns: &str, values: &[(&str, &str)]) -> Result<()> {
    let values: Vec<(String, String)> = values
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    in_netns_async(netns, move || {
        for (key, value) in &values {
            let path = format!("/proc/sys/{}", key.replace('.', "/"));
            std::fs::write(&path, value)
                .map_err(|e| io::Error::new(e.kind(), format!("writing {path}: {e}")))?;
        }
        Ok(())
    })
    .await
}

/// Reads one per-netns sysctl.
pub fn read_sysctl(netns: &str, key: &str) -> Result<String> {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    in_netns(netns, move || {
        Ok(std::fs::read_to_string(&path)?.trim().to_string())
    })
}
