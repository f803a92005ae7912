//! gRPC access control: a bearer token checked by an interceptor, and TLS with optional client
//! certificates. Health checks are never intercepted, so probes keep working.

use std::{fmt, sync::Arc};

use subtle::ConstantTimeEq as _;
use tonic::{
    Request, Status,
    service::Interceptor,
    transport::{Certificate, Identity, ServerTlsConfig},
};

use crate::{config::GrpcTls, watched_file::WatchedFile};

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

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("cannot read --{flag} {path}: {source}")]
pub struct TlsError {
    /// The flag naming the file.
    pub flag: &'static str,
    /// The path as configured, for the message.
    pub path: String,
    /// Why reading failed (missing, permission denied...).
    pub source: std::io::Error,
}

/// The server TLS settings: certificate and key, and the client CA when client certificates are
/// required.
///
/// # Errors
/// [`TlsError`] naming the flag of an unreadable file.
pub fn server_tls(tls: &GrpcTls) -> Result<ServerTlsConfig, TlsError> {
    let read = |flag: &'static str, path: &std::path::Path| {
        std::fs::read(path).map_err(|source| TlsError {
            flag,
            path: path.display().to_string(),
            source,
        })
    };
    let identity = Identity::from_pem(
        read("grpc-tls-cert", &tls.cert)?,
        read("grpc-tls-key", &tls.key)?,
    );
    let mut config = ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &tls.client_ca {
        config = config.client_ca_root(Certificate::from_pem(read("grpc-client-ca", ca)?));
    }
    Ok(config)
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
