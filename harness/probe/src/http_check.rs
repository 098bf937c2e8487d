//! A small HTTP GET from a chosen netns (and optionally a chosen source address) to a VM's
//! responder port, with hyper's HTTP/1 client on a socket opened in that netns. Reports the
//! connect and response instants on the run clock, the status and the start of the body; a
//! failure is a result (`Measured::Missing` with the error), not an error.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use vmbgp_host::clock::{MonoStamp, RunClock};
use vmbgp_host::netns::in_netns;

use vmbgp_model::Measured;

use crate::ser;

/// Largest body kept.
const BODY_LIMIT: usize = 64 * 1024;

/// What to fetch.
#[derive(Debug, Clone)]
pub struct HttpGet {
    pub netns: Option<String>,
    pub target: SocketAddr,
    /// Path and query, e.g. `/` or `/healthz`.
    pub path: String,
    /// Bind the client socket to this source address first (`None`: the kernel's choice).
    pub source: Option<IpAddr>,
    /// Bound on the whole exchange (connect + response).
    pub timeout: Duration,
    /// Extra request headers (name, value).
    pub headers: Vec<(String, String)>,
}

impl HttpGet {
    pub fn new(target: SocketAddr, path: impl Into<String>) -> HttpGet {
        HttpGet {
            netns: None,
            target,
            path: path.into(),
            source: None,
            timeout: Duration::from_secs(5),
            headers: Vec::new(),
        }
    }
}

/// The outcome of one GET.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpCheck {
    pub target: SocketAddr,
    #[serde(serialize_with = "ser::stamp", rename = "startedNs")]
    pub started: MonoStamp,
    /// When the TCP connection was established.
    #[serde(serialize_with = "ser::status_form")]
    pub connected: Measured<u64>,
    /// When the complete response had arrived (ns since the run anchor).
    #[serde(serialize_with = "ser::status_form")]
    pub completed: Measured<u64>,
    #[serde(serialize_with = "ser::status_form")]
    pub status: Measured<u16>,
    /// The body (lossy UTF-8, at most 64 KiB).
    #[serde(serialize_with = "ser::status_form")]
    pub body: Measured<String>,
}

impl HttpCheck {
    /// True when the server answered with a 2xx status.
    pub fn ok(&self) -> bool {
        self.status
            .observed()
            .is_some_and(|s| (200..300).contains(s))
    }
}

fn stamp_ns(at: MonoStamp) -> u64 {
    u64::try_from(at.since_anchor().as_nanos()).unwrap_or(u64::MAX)
}

/// Opens a non-blocking TCP socket (bound to `source` if given) in `netns`.
pub(crate) fn tcp_socket_in(
    netns: Option<&str>,
    family_of: SocketAddr,
    source: Option<IpAddr>,
) -> Result<socket2::Socket, String> {
    let opened = in_netns(netns, move || {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(family_of),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        if let Some(ip) = source {
            socket.bind(&SocketAddr::new(ip, 0).into())?;
        }
        Ok::<_, std::io::Error>(socket)
    });
    match opened {
        Ok(Ok(socket)) => Ok(socket),
        Ok(Err(e)) => Err(format!("cannot open a TCP socket: {e}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Performs the GET; never fails as a call: failures are reported inside [`HttpCheck`].
pub async fn http_get(clock: &RunClock, req: &HttpGet) -> HttpCheck {
    let started = clock.now();
    let mut check = HttpCheck {
        target: req.target,
        started,
        connected: Measured::missing("not connected"),
        completed: Measured::missing("no response"),
        status: Measured::missing("no response"),
        body: Measured::missing("no response"),
    };
    let work = exchange(clock, req, &mut check);
    if tokio::time::timeout(req.timeout, work).await.is_err() {
        let why = format!("timed out after {:?}", req.timeout);
        if !check.connected.is_observed() {
            check.connected = Measured::missing(format!("connect {why}"));
        }
        check.completed = Measured::missing(why.clone());
        check.status = Measured::missing(why.clone());
        check.body = Measured::missing(why);
    }
    check
}

async fn exchange(clock: &RunClock, req: &HttpGet, check: &mut HttpCheck) {
    let fail = |check: &mut HttpCheck, why: String| {
        check.completed = Measured::missing(why.clone());
        check.status = Measured::missing(why.clone());
        check.body = Measured::missing(why);
    };
    let socket = match tcp_socket_in(req.netns.as_deref(), req.target, req.source) {
        Ok(s) => s,
        Err(why) => {
            check.connected = Measured::missing(why.clone());
            return fail(check, why);
        }
    };
    let stream = match connect(socket, req.target).await {
        Ok(s) => s,
        Err(e) => {
            let why = format!("connect to {} failed: {e}", req.target);
            check.connected = Measured::missing(why.clone());
            return fail(check, why);
        }
    };
    check.connected = Measured::Observed(stamp_ns(clock.now()));
    let (mut sender, connection) =
        match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await {
            Ok(pair) => pair,
            Err(e) => return fail(check, format!("HTTP handshake failed: {e}")),
        };
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut request = http::Request::get(req.path.as_str())
        .header(http::header::HOST, req.target.to_string())
        .header(http::header::CONNECTION, "close");
    for (name, value) in &req.headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let request = request.body(Empty::<Bytes>::new());
    let request = match request {
        Ok(r) => r,
        Err(e) => return fail(check, format!("invalid request path {:?}: {e}", req.path)),
    };
    let response = match sender.send_request(request).await {
        Ok(r) => r,
        Err(e) => {
            driver.abort();
            return fail(check, format!("request failed: {e}"));
        }
    };
    check.status = Measured::Observed(response.status().as_u16());
    match Limited::new(response.into_body(), BODY_LIMIT)
        .collect()
        .await
    {
        Ok(body) => {
            check.completed = Measured::Observed(stamp_ns(clock.now()));
            check.body = Measured::Observed(String::from_utf8_lossy(&body.to_bytes()).into_owned());
        }
        Err(e) => {
            let why = format!("reading the body failed: {e}");
            check.completed = Measured::missing(why.clone());
            check.body = Measured::missing(why);
        }
    }
    driver.abort();
}

async fn connect(
    socket: socket2::Socket,
    target: SocketAddr,
) -> std::io::Result<tokio::net::TcpStream> {
    socket.set_nonblocking(true)?;
    let socket = tokio::net::TcpSocket::from_std_stream(std::net::TcpStream::from(socket));
    socket.connect(target).await
}
