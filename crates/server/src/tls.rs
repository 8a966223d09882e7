//! The TLS listener: the same application, served over TLS with a certificate
//! from the built-in CA, asking clients for a certificate (an X.509-SVID)
//! without requiring one. The client's chain reaches handlers as
//! [`PeerCertificates`]; handlers verify it as an SVID where they use it, so a
//! bad certificate gets a precise JSON error rather than a TLS alert.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Body;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mandate_identity::{BuiltinCa, DeferredClientCertVerifier, certificates_from_pem};
use rustls::ServerConfig;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::caller::PeerCertificates;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The server side of TLS: a fresh certificate from `ca` for `localhost`,
/// the listener's IP and `dns_names`.
pub(crate) fn server_config(
    ca: &BuiltinCa,
    addr: SocketAddr,
    dns_names: &[String],
    now: i64,
) -> anyhow::Result<Arc<ServerConfig>> {
    let mut names = vec!["localhost".to_owned()];
    names.extend(dns_names.iter().cloned());
    let mut ips = vec![addr.ip()];
    if addr.ip().is_unspecified() || !addr.ip().is_loopback() {
        ips.push(std::net::IpAddr::from([127, 0, 0, 1]));
    }
    let (cert_pem, key_pem) = ca
        .issue_server_certificate(&names, &ips, now, 30 * 86_400)
        .map_err(|e| anyhow::anyhow!("cannot issue the TLS certificate: {e}"))?;
    let mut chain = certificates_from_pem(&cert_pem).map_err(|e| anyhow::anyhow!("{e}"))?;
    chain.extend(certificates_from_pem(&ca.cert_pem()).map_err(|e| anyhow::anyhow!("{e}"))?);
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .context("the TLS key from the built-in CA cannot be read")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_client_cert_verifier(Arc::new(DeferredClientCertVerifier::new()))
        .with_single_cert(chain, key)
        .context("the TLS certificate does not match its key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` over TLS until `stop` turns true, then lets
/// open connections finish their requests.
pub(crate) async fn serve(
    listener: TcpListener,
    config: Arc<ServerConfig>,
    app: Router,
    mut stop: watch::Receiver<bool>,
) {
    let acceptor = TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(error) => {
                    tracing::debug!(%error, "TLS accept failed");
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%error, %peer, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let certs = PeerCertificates(
                tls.get_ref()
                    .1
                    .peer_certificates()
                    .map(|chain| Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect())),
            );
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(certs.clone());
                    app.clone().oneshot(request.map(Body::new))
                });
            let connection = auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .into_owned();
            if let Err(error) = watcher.watch(connection).await {
                tracing::debug!(%error, %peer, "TLS connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("TLS connections still open after 10 s; closing them");
    }
}
