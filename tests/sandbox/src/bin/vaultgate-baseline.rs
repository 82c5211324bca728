//! The benchmark's baseline: a bare axum + rustls server answering every `/validate` with one
//! fixed admission response, the floor of what any webhook on this stack can serve.
//! `vaultgate-baseline ADDR CERT KEY`, started by `vaultgate-bench`.
//!
//! A binary of its own so that it keeps the system allocator, which the webhook's figures have
//! always been compared on; the benchmark process, whose emulators hold up to hundreds of
//! thousands of objects, uses mimalloc.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let addr: SocketAddr = args.get(1).context("ADDR CERT KEY")?.parse()?;
    let cert = PathBuf::from(args.get(2).context("CERT")?);
    let key = PathBuf::from(args.get(3).context("KEY")?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(serve(addr, cert, key))
}

/// The baseline: axum over tokio-rustls (the same stack, TLS configuration and connection
/// handling as the webhook) answering every request with a fixed AdmissionReview.
async fn serve(addr: SocketAddr, cert: PathBuf, key: PathBuf) -> anyhow::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    let fixed: &'static [u8] = br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"0b4f8f34-0000-4000-8000-000000000001","allowed":true,"status":{}}}"#;
    let app = axum::Router::new().route(
        "/validate",
        axum::routing::post(move |_body: axum::body::Bytes| async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                fixed,
            )
        }),
    );
    let certs: Vec<CertificateDer> =
        CertificateDer::pem_file_iter(&cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&key)?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
    .with_no_client_auth()
    .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .await;
        });
    }
}
