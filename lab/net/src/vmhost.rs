//! What a VM's guest would run, served once per vmhost netns for every VM address there: an HTTP
//! responder and a TCP sink (the ports the VM template's cloud-init opens), bound to 0.0.0.0 so each
//! address on `lo` answers; and the guest's egress call, an HTTP GET from the VM's own address.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use axum::Router as HttpRouter;
use axum::extract::{ConnectInfo, State};
use axum::http::Uri;
use axum::serve::IncomingStream;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::netns::{tcp_connect_in, tokio_listener_in};

/// Ports the VM template's cloud-init opens (the lead may change them; these are the defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VmPorts {
    /// HTTP responder (answers every path with JSON naming the VM address and node).
    pub http: u16,
    /// TCP sink (reads and discards until the client closes) for throughput probes.
    pub sink: u16,
}

impl Default for VmPorts {
    fn default() -> Self {
        VmPorts {
            http: 8080,
            sink: 5201,
        }
    }
}

/// The longest a sink connection is kept (bounds any traffic loop pointed at it).
const SINK_MAX_CONNECTION: Duration = Duration::from_secs(600);

/// The JSON the HTTP responder returns.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct VmHttpReply {
    /// The VM address the request was sent to.
    pub address: String,
    /// The node whose vmhost answered.
    pub node: String,
    /// The request's path.
    pub path: String,
    /// The client's address.
    pub client: String,
}

#[derive(Debug, Clone)]
struct ConnInfo {
    local: Option<SocketAddr>,
    remote: Option<SocketAddr>,
}

impl axum::extract::connect_info::Connected<IncomingStream<'_, TcpListener>> for ConnInfo {
    fn connect_info(stream: IncomingStream<'_, TcpListener>) -> Self {
        ConnInfo {
            local: stream.io().local_addr().ok(),
            remote: Some(*stream.remote_addr()),
        }
    }
}

async fn answer(
    State(node): State<String>,
    ConnectInfo(info): ConnectInfo<ConnInfo>,
    uri: Uri,
) -> axum::Json<VmHttpReply> {
    axum::Json(VmHttpReply {
        address: info.local.map(|a| a.ip().to_string()).unwrap_or_default(),
        node,
        path: uri.path().to_string(),
        client: info.remote.map(|a| a.ip().to_string()).unwrap_or_default(),
    })
}

/// Starts the HTTP responder and TCP sink inside a vmhost netns; returns their tasks.
pub async fn start_services(
    netns: &str,
    node: &str,
    ports: VmPorts,
) -> Result<Vec<JoinHandle<()>>> {
    let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
    let http_listener = tokio_listener_in(netns, SocketAddr::new(any, ports.http)).await?;
    let sink_listener = tokio_listener_in(netns, SocketAddr::new(any, ports.sink)).await?;
    let app = HttpRouter::new()
        .fallback(answer)
        .with_state(node.to_string());
    let http = tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<ConnInfo>();
        if let Err(e) = axum::serve(http_listener, service).await {
            tracing::warn!(error = %e, "vmhost HTTP responder stopped");
        }
    });
    let sink = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = sink_listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 256 * 1024];
                let _ = tokio::time::timeout(SINK_MAX_CONNECTION, async {
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                })
                .await;
            });
        }
    });
    Ok(vec![http, sink])
}

/// The egress call a VM's guest makes: `GET url` from `source` (the VM address), inside the vmhost
/// netns, so the harness's endpoint sees the VM's own address (unNATed egress). Returns the HTTP status.
/// The URL's host must be an IPv4 literal reachable from the vmhost (e.g. ext's 198.18.0.155).
pub async fn egress_call(
    netns: &str,
    source: Ipv4Addr,
    url: &str,
    timeout: Duration,
) -> Result<u16> {
    let fail = |detail: String| Error::Dataplane {
        op: "egress call",
        address: source.to_string(),
        detail,
    };
    let uri: Uri = url
        .parse()
        .map_err(|e| fail(format!("invalid URL {url}: {e}")))?;
    if uri.scheme_str() != Some("http") {
        return Err(fail(format!("only http:// URLs are supported: {url}")));
    }
    let host: Ipv4Addr = uri
        .host()
        .and_then(|h| h.parse().ok())
        .ok_or_else(|| fail(format!("the URL's host must be an IPv4 address: {url}")))?;
    let port = uri.port_u16().unwrap_or(80);
    let stream = tcp_connect_in(
        netns,
        Some(SocketAddr::new(IpAddr::V4(source), 0)),
        SocketAddr::new(IpAddr::V4(host), port),
        timeout,
    )
    .await?;
    let exchange = async {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, axum::body::Body>(TokioIo::new(stream))
                .await
                .map_err(|e| fail(format!("HTTP handshake: {e}")))?;
        let driver = tokio::spawn(conn);
        let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let request = http::Request::get(path)
            .header(http::header::HOST, format!("{host}:{port}"))
            .header("x-vmbgp-vm-address", source.to_string())
            .body(axum::body::Body::empty())
            .map_err(|e| fail(format!("building the request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| fail(format!("sending the request: {e}")))?;
        let status = response.status().as_u16();
        let _ = axum::body::to_bytes(axum::body::Body::new(response.into_body()), 1 << 20).await;
        driver.abort();
        Ok(status)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| fail(format!("no response within {timeout:?}")))?
}
