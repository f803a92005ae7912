//! The signing secrets in force: fixed at start, or read from a file that may change.

use std::sync::Arc;

use bytes::Bytes;
use http::HeaderMap;

use super::verify::{SigningSecret, VerifiedWebhook, Verifier, VerifyError};
use crate::watched_file::WatchedFile;

/// Where the verifier comes from.
#[derive(Debug)]
pub enum SigningSecrets {
    /// Secrets given inline at start (flag or environment): fixed until restart.
    Fixed(Verifier),
    /// Secrets from a file, read again when it changes.
    File(Arc<WatchedFile<Verifier>>),
}

// === impl SigningSecrets ===

impl SigningSecrets {
    /// Verifies with the current secrets. When the signature fails and the secret file has changed
    /// since it was last read, reads it and tries once more: a webhook signed with a rotated-in
    /// secret is accepted as soon as the file holds it, without waiting for the next poll.
    ///
    /// # Errors
    /// [`VerifyError`] naming the first thing wrong.
    pub fn verify(&self, headers: &HeaderMap, body: Bytes) -> Result<VerifiedWebhook, VerifyError> {
        match self {
            SigningSecrets::Fixed(verifier) => verifier.verify(headers, body),
            SigningSecrets::File(file) => match file.current().verify(headers, body.clone()) {
                Err(VerifyError::InvalidSignature) if file.reload_if_changed() => {
                    file.current().verify(headers, body)
                }
                outcome => outcome,
            },
        }
    }
}

/// Parses a secret file's text into a verifier (for [`WatchedFile`]).
///
/// # Errors
/// What is wrong with the secrets, never the secrets themselves.
pub fn parse_secret_file(text: &str) -> Result<Verifier, String> {
    SigningSecret::parse_list(text)
        .map(|secrets| Verifier::new(&secrets))
        .map_err(|e| e.to_string())
}
