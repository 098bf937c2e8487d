//! HTTPS for the lab API: a throwaway CA and a server certificate for the listen address, made at start, and the
//! listener serving TLS with them.
//!
//! kube-apiserver serves HTTPS only, and client-go (kubectl) sends a kubeconfig's credentials over HTTPS only, so
//! the token would never reach a plain-HTTP lab. The certificates are ECDSA P-256 (ring, the workspace's one TLS
//! provider), encoded here as minimal X.509 v3: the CA (`basicConstraints cA`, `keyCertSign`) and a leaf for the
//! listen IP and `localhost` (`serverAuth`), valid from an hour ago for a year. Clients trust the CA through the
//! kubeconfig's `certificate-authority-data`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::TryRngCore;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;

use crate::error::LabError;

/// A handshake not done by then is dropped (it must not hold a connection slot forever).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The lab's certificates and the server configuration using them.
pub struct LabTls {
    /// The CA certificate, PEM: what clients trust.
    pub ca_pem: String,
    pub server_config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for LabTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LabTls").finish_non_exhaustive()
    }
}

fn tls_err(what: &str, e: impl std::fmt::Display) -> LabError {
    LabError::Tls(format!("{what}: {e}"))
}

impl LabTls {
    /// A new CA and a server certificate for `ip` (and `localhost`) signed by it.
    pub fn generate(ip: IpAddr) -> Result<Self, LabError> {
        let rng = SystemRandom::new();
        let new_key = || {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(|e| tls_err("generating a key", e))?;
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
                    .map_err(|e| tls_err("loading a key", e))?;
            Ok::<_, LabError>((pkcs8.as_ref().to_vec(), pair))
        };
        let (_, ca_key) = new_key()?;
        let (server_pkcs8, server_key) = new_key()?;
        let now = chrono::Utc::now();
        let validity = (
            now - chrono::Duration::hours(1),
            now + chrono::Duration::days(365),
        );
        let ca_id = key_id(ca_key.public_key().as_ref());
        let ca = Cert {
            issuer: "vmbgp-lab-ca",
            subject: "vmbgp-lab-ca",
            public_key: ca_key.public_key().as_ref(),
            validity,
            extensions: vec![
                extension(BASIC_CONSTRAINTS, true, &seq(&[0x01, 0x01, 0xff])),
                // keyCertSign and cRLSign (bits 5 and 6).
                extension(KEY_USAGE, true, &[0x03, 0x02, 0x01, 0x06]),
                extension(SUBJECT_KEY_ID, false, &tlv(0x04, &ca_id)),
            ],
        }
        .sign(&ca_key, &rng)?;
        let ip_bytes = match ip {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let mut names = tlv(0x87, &ip_bytes);
        names.extend(tlv(0x82, b"localhost"));
        let server = Cert {
            issuer: "vmbgp-lab-ca",
            subject: "vmbgp-lab-apiserver",
            public_key: server_key.public_key().as_ref(),
            validity,
            extensions: vec![
                extension(BASIC_CONSTRAINTS, true, &seq(&[])),
                // digitalSignature (bit 0).
                extension(KEY_USAGE, true, &[0x03, 0x02, 0x07, 0x80]),
                extension(EXT_KEY_USAGE, false, &seq(&tlv(0x06, SERVER_AUTH))),
                extension(SUBJECT_ALT_NAME, false, &seq(&names)),
                extension(AUTHORITY_KEY_ID, false, &seq(&tlv(0x80, &ca_id))),
            ],
        }
        .sign(&ca_key, &rng)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err("choosing TLS versions", e))?
            .with_no_client_auth()
            .with_single_cert(
                vec![
                    CertificateDer::from(server),
                    CertificateDer::from(ca.clone()),
                ],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_pkcs8)),
            )
            .map_err(|e| tls_err("loading the server certificate", e))?;
        // The server speaks HTTP/1.1 only; offering h2 would make Go clients choose it.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(LabTls {
            ca_pem: pem("CERTIFICATE", &ca),
            server_config: Arc::new(config),
        })
    }
}

/// The accepting side: TCP accepts and TLS handshakes run in a task (a client that never finishes its handshake
/// delays nobody); finished connections queue for the server.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS on `tcp` until `shutdown`. Every accepted socket gets TCP_NODELAY: without it each small watch
    /// write waits ~40 ms for Nagle and delayed ACK.
    pub fn new(
        tcp: TcpListener,
        config: Arc<rustls::ServerConfig>,
        shutdown: CancellationToken,
    ) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (socket, peer) = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = tcp.accept() => match r {
                        Ok(c) => c,
                        Err(e) => {
                            // As axum's listener does: out of descriptors and the like pass; wait, retry.
                            tracing::debug!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                };
                let _ = socket.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(socket)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task ended (shutdown): no more connections.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

// ------------------------------------------------------------------------------------------- X.509 in DER

const ECDSA_WITH_SHA256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const PRIME256V1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const SUBJECT_KEY_ID: &[u8] = &[0x55, 0x1d, 0x0e];
const KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x0f];
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
const AUTHORITY_KEY_ID: &[u8] = &[0x55, 0x1d, 0x23];
const EXT_KEY_USAGE: &[u8] = &[0x55, 0x1d, 0x25];
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];

/// One DER element: tag, definite length, content.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn seq(content: &[u8]) -> Vec<u8> {
    tlv(0x30, content)
}

fn algorithm(oid: &[u8], parameter: Option<&[u8]>) -> Vec<u8> {
    let mut content = tlv(0x06, oid);
    if let Some(p) = parameter {
        content.extend(tlv(0x06, p));
    }
    seq(&content)
}

/// `Name` with one common name.
fn name(common_name: &str) -> Vec<u8> {
    let mut attribute = tlv(0x06, COMMON_NAME);
    attribute.extend(tlv(0x0c, common_name.as_bytes()));
    seq(&tlv(0x31, &seq(&attribute)))
}

fn extension(oid: &[u8], critical: bool, value: &[u8]) -> Vec<u8> {
    let mut content = tlv(0x06, oid);
    if critical {
        content.extend([0x01, 0x01, 0xff]);
    }
    content.extend(tlv(0x04, value));
    seq(&content)
}

/// `UTCTime` (certificates use it until 2049).
fn time(t: chrono::DateTime<chrono::Utc>) -> Vec<u8> {
    tlv(0x17, t.format("%y%m%d%H%M%SZ").to_string().as_bytes())
}

/// A key identifier: the first 20 bytes of the key's SHA-256 (RFC 7093 method 1).
fn key_id(public_key: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, public_key).as_ref()[..20].to_vec()
}

/// A positive 16-byte serial number (its first byte is in 0x40..0x80: no sign or padding byte).
fn serial() -> Result<Vec<u8>, LabError> {
    let mut bytes = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|e| tls_err("drawing a serial number", e))?;
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    Ok(tlv(0x02, &bytes))
}

struct Cert<'a> {
    issuer: &'a str,
    subject: &'a str,
    public_key: &'a [u8],
    validity: (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>),
    extensions: Vec<Vec<u8>>,
}

impl Cert<'_> {
    /// The certificate in DER, signed by `issuer_key`.
    fn sign(&self, issuer_key: &EcdsaKeyPair, rng: &SystemRandom) -> Result<Vec<u8>, LabError> {
        let signature_algorithm = algorithm(ECDSA_WITH_SHA256, None);
        let mut spki = algorithm(EC_PUBLIC_KEY, Some(PRIME256V1));
        let mut key_bits = vec![0u8];
        key_bits.extend_from_slice(self.public_key);
        spki.extend(tlv(0x03, &key_bits));
        let mut validity = time(self.validity.0);
        validity.extend(time(self.validity.1));
        let mut tbs = tlv(0xa0, &tlv(0x02, &[2])); // v3
        tbs.extend(serial()?);
        tbs.extend(&signature_algorithm);
        tbs.extend(name(self.issuer));
        tbs.extend(seq(&validity));
        tbs.extend(name(self.subject));
        tbs.extend(seq(&spki));
        tbs.extend(tlv(0xa3, &seq(&self.extensions.concat())));
        let tbs = seq(&tbs);
        let signature = issuer_key
            .sign(rng, &tbs)
            .map_err(|e| tls_err("signing a certificate", e))?;
        let mut signature_bits = vec![0u8];
        signature_bits.extend_from_slice(signature.as_ref());
        let mut cert = tbs;
        cert.extend(signature_algorithm);
        cert.extend(tlv(0x03, &signature_bits));
        Ok(seq(&cert))
    }
}

/// PEM with 64-character lines.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_use_the_short_and_long_forms() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = tlv(0x04, &[0; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }

    #[test]
    fn a_client_trusting_the_ca_accepts_the_server_certificate_for_the_ip_only() {
        let tls = LabTls::generate(IpAddr::from([127, 0, 0, 1])).unwrap();
        use rustls::pki_types::pem::PemObject;
        let ca = CertificateDer::from_pem_slice(tls.ca_pem.as_bytes()).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let handshake = |server_name: &str| {
            let mut c = rustls::ClientConnection::new(
                Arc::new(client.clone()),
                server_name.to_string().try_into().unwrap(),
            )
            .unwrap();
            let mut s = rustls::ServerConnection::new(tls.server_config.clone()).unwrap();
            // Shuttle records until both sides are done or one fails.
            for _ in 0..10 {
                let mut buf = Vec::new();
                c.write_tls(&mut buf).unwrap();
                s.read_tls(&mut buf.as_slice()).unwrap();
                s.process_new_packets().map_err(|e| e.to_string())?;
                let mut buf = Vec::new();
                s.write_tls(&mut buf).unwrap();
                c.read_tls(&mut buf.as_slice()).unwrap();
                c.process_new_packets().map_err(|e| e.to_string())?;
                if !c.is_handshaking() && !s.is_handshaking() {
                    return Ok(());
                }
            }
            Err("handshake did not finish".to_string())
        };
        handshake("127.0.0.1").unwrap();
        handshake("localhost").unwrap();
        assert!(handshake("127.0.0.2").is_err());
    }
}
