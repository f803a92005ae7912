//! gRPC access control: a bearer token checked by an interceptor, and TLS with optional client
//! certificates. Health checks are never intercepted, so probes keep working.

use std::{fmt, path::Path, sync::Arc};

use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject as _},
    server::WebPkiClientVerifier,
    sign::CertifiedKey,
};
use subtle::ConstantTimeEq as _;
use tonic::{Request, Status, service::Interceptor};

use crate::{config::GrpcTls, watched_file::WatchedFile};

/// The only application protocol the gRPC port speaks over TLS (ALPN).
const ALPN_H2: &[u8] = b"h2";
/// The metadata key carrying the token.
const AUTHORIZATION: &str = "authorization";
/// The scheme in front of the token.
const BEARER: &str = "Bearer ";

/// A bearer token. Its `Debug` output never shows it.
pub struct Token(Vec<u8>);

// === impl Token ===

impl Token {
    /// Whether `presented` is this token, compared in time that does not depend on where they
    /// differ (`subtle`), so the token cannot be guessed byte by byte.
    fn matches(&self, presented: &[u8]) -> bool {
        self.0.ct_eq(presented).into()
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// Reads a token file: its trimmed text, which must not be empty.
///
/// # Errors
/// When the file holds no token.
pub fn parse_token(text: &str) -> Result<Token, String> {
    let token = text.trim();
    if token.is_empty() {
        return Err("the token file is empty".to_owned());
    }
    Ok(Token(token.as_bytes().to_vec()))
}

/// Checks `authorization: Bearer <token>` on every call; lets everything through without a token
/// file.
#[derive(Debug, Clone, Default)]
pub struct TokenCheck {
    /// The expected token, read again when its file changes.
    token: Option<Arc<WatchedFile<Token>>>,
}

// === impl TokenCheck ===

impl TokenCheck {
    /// A check against the token in `file`, or none.
    pub fn new(file: Option<Arc<WatchedFile<Token>>>) -> Self {
        TokenCheck { token: file }
    }

    fn allows(&self, presented: Option<&[u8]>) -> bool {
        let Some(file) = &self.token else {
            return true;
        };
        let Some(presented) = presented else {
            return false;
        };
        // A token rotated in the file is honoured on first use, not at the next poll.
        file.current().matches(presented)
            || (file.reload_if_changed() && file.current().matches(presented))
    }
}

impl Interceptor for TokenCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let presented = request
            .metadata()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix(BEARER))
            .map(str::as_bytes);
        if self.allows(presented) {
            Ok(request)
        } else {
            Err(Status::unauthenticated("missing or invalid bearer token"))
        }
    }
}

/// Why TLS could not be set up, naming the flag of the file at fault.
#[derive(Debug, thiserror::Error)]
#[error("invalid --{flag} {path}: {reason}")]
pub struct TlsError {
    /// The flag naming the file.
    pub flag: &'static str,
    /// The path as configured, for the message.
    pub path: String,
    /// What is wrong: unreadable, not PEM, no certificate, a key that does not match.
    pub reason: String,
}

/// The server TLS settings: certificate and key, ALPN `h2`, and the client CA when client
/// certificates are required. The files are checked here, at start, so that a bad one stops the
/// bridge with its flag named instead of failing later as a bare "transport error". The gRPC
/// listener does the handshakes itself (see the `grpc_transport` module), under its handshake
/// timeout.
///
/// # Errors
/// [`TlsError`] naming the flag of an unreadable or unusable file.
pub fn server_tls(tls: &GrpcTls) -> Result<Arc<ServerConfig>, TlsError> {
    let cert = read_pem("grpc-tls-cert", &tls.cert)?;
    let key = read_pem("grpc-tls-key", &tls.key)?;
    let (certs, key) = check_identity(tls, &cert, &key)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error("grpc-tls-cert", &tls.cert, e))?;
    let builder = match &tls.client_ca {
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, provider)?),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| tls_error("grpc-tls-key", &tls.key, e))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// A verifier that admits only client certificates signed by a CA of the `--grpc-client-ca` file.
fn client_verifier(
    ca: &Path,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let pem = read_pem("grpc-client-ca", ca)?;
    let mut roots = RootCertStore::empty();
    for cert in certificates("grpc-client-ca", ca, &pem)? {
        roots
            .add(cert)
            .map_err(|e| tls_error("grpc-client-ca", ca, e))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|e| tls_error("grpc-client-ca", ca, e))
}

/// Reads a PEM file.
fn read_pem(flag: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| tls_error(flag, path, e))
}

/// The certificates of a PEM file; at least one.
fn certificates(
    flag: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error(flag, path, format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(tls_error(flag, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

/// The certificate chain and the key, once the key parses and belongs to the certificate.
fn check_identity(
    tls: &GrpcTls,
    cert: &[u8],
    key: &[u8],
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let certs = certificates("grpc-tls-cert", &tls.cert, cert)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| {
        tls_error(
            "grpc-tls-key",
            &tls.key,
            format!("not a PEM private key ({e})"),
        )
    })?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(key.clone_key())
        .map_err(|e| tls_error("grpc-tls-key", &tls.key, e))?;
    CertifiedKey::new(certs.clone(), signing_key)
        .keys_match()
        .map(|()| (certs, key))
        .map_err(|_| {
            tls_error(
                "grpc-tls-key",
                &tls.key,
                "the key does not belong to the --grpc-tls-cert certificate",
            )
        })
}

fn tls_error(flag: &'static str, path: &Path, reason: impl ToString) -> TlsError {
    TlsError {
        flag,
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_exactly() {
        let token = parse_token("secret-token").unwrap();
        assert!(token.matches(b"secret-token"));
        assert!(!token.matches(b"secret-tokeN"));
        assert!(!token.matches(b"secret"));
        assert!(!token.matches(b"secret-token2"));
        assert!(parse_token(" \n").is_err());
        assert_eq!(parse_token(" abc \n").unwrap().0, b"abc");
        assert!(!format!("{:?}", parse_token("abc").unwrap()).contains("abc"));
    }

    #[test]
    fn without_a_token_file_everything_passes() {
        assert!(TokenCheck::default().allows(None));
    }
}
