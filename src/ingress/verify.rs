//! Signature verification (Standard Webhooks / Svix scheme) with one or more signing secrets.
//!
//! Only [`Verifier::verify`] can make a [`VerifiedWebhook`], and only that type reaches decoding and
//! the log (typestate): an unverified body cannot be stored by mistake.

use std::fmt;

use bytes::Bytes;
use http::HeaderMap;
use svix::webhooks::{Webhook, WebhookError};

/// Prefix Clerk and Svix put in front of the base64 key.
const SECRET_PREFIX: &str = "whsec_";
/// Message id headers, in the order the `svix` crate reads them.
const ID_HEADERS: [&str; 2] = ["svix-id", "webhook-id"];
/// Timestamp headers, in the order the `svix` crate reads them.
const TIMESTAMP_HEADERS: [&str; 2] = ["svix-timestamp", "webhook-timestamp"];
/// Signature headers, in the order the `svix` crate reads them.
const SIGNATURE_HEADERS: [&str; 2] = ["svix-signature", "webhook-signature"];
/// How far a webhook's timestamp may be from now, either way: the `svix` crate's tolerance.
const TOLERANCE_SECS: i64 = 5 * 60;
/// Longest message id the bridge stores (Svix ids are about 30 characters).
const MAX_ID_LEN: usize = 256;

/// One signing secret (`whsec_<base64>`), decoded. Its `Debug` output never shows the key.
#[derive(Clone)]
pub struct SigningSecret {
    /// The HMAC-SHA256 key: the base64 after `whsec_`, decoded.
    key: Vec<u8>,
}

/// Why a signing secret is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InvalidSecret {
    /// Nothing after the prefix, or nothing once decoded.
    #[error("a signing secret is empty")]
    Empty,
    /// The part after the prefix does not decode even leniently (padding optional).
    #[error("a signing secret is not base64 (expected whsec_ followed by base64)")]
    NotBase64,
}

// === impl SigningSecret ===

impl SigningSecret {
    /// Parses `whsec_<base64>` (the prefix is optional; missing `=` padding is tolerated).
    ///
    /// # Errors
    /// [`InvalidSecret`] when the secret is empty or not base64.
    pub fn try_new(secret: &str) -> Result<Self, InvalidSecret> {
        use base64_engine::decode_lenient;
        let body = secret.strip_prefix(SECRET_PREFIX).unwrap_or(secret);
        if body.is_empty() {
            return Err(InvalidSecret::Empty);
        }
        let key = decode_lenient(body).ok_or(InvalidSecret::NotBase64)?;
        if key.is_empty() {
            return Err(InvalidSecret::Empty);
        }
        Ok(SigningSecret { key })
    }

    /// Parses a list of secrets separated by spaces or commas (rotation; dev and prod instances).
    ///
    /// # Errors
    /// [`InvalidSecret`] for the first unusable secret, or [`InvalidSecret::Empty`] when the list is.
    pub fn parse_list(list: &str) -> Result<Vec<Self>, InvalidSecret> {
        let secrets = list
            .split([' ', ',', '\n', '\t'])
            .filter(|s| !s.trim().is_empty())
            .map(|s| Self::try_new(s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        if secrets.is_empty() {
            return Err(InvalidSecret::Empty);
        }
        Ok(secrets)
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningSecret([redacted])")
    }
}

/// Base64 decoding as lenient as Clerk's and Svix's other SDKs: padding optional, and unused
/// trailing bits of an unpadded secret ignored.
mod base64_engine {
    use base64::{
        Engine, alphabet,
        engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig},
    };

    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );

    pub(super) fn decode_lenient(body: &str) -> Option<Vec<u8>> {
        LENIENT.decode(body).ok()
    }
}

/// A webhook whose signature matched one of the configured secrets.
#[derive(Debug)]
pub struct VerifiedWebhook {
    /// The message id: the idempotency key.
    message_id: String,
    /// The verbatim body; UTF-8, since signing requires it.
    body: Bytes,
}

// === impl VerifiedWebhook ===

impl VerifiedWebhook {
    /// The message id (`svix-id` or `webhook-id`).
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// The verbatim body as text.
    pub fn body(&self) -> &str {
        // Verification signed the body as UTF-8 (`Webhook::sign` rejects anything else), and
        // `verify` checked it again before building this value.
        std::str::from_utf8(&self.body).unwrap_or_default()
    }
}

/// Why a webhook was rejected. Each maps to 401 with a short reason.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// `svix-id`, `svix-timestamp` or `svix-signature` is absent (and so is its `webhook-` form).
    #[error("missing webhook signature headers")]
    MissingHeaders,
    /// The timestamp header is not a unix time.
    #[error("invalid webhook timestamp")]
    InvalidTimestamp,
    /// The timestamp is more than five minutes away from now (replay protection).
    #[error("webhook timestamp outside the allowed tolerance")]
    StaleTimestamp,
    /// No configured secret produced any of the signatures.
    #[error("invalid webhook signature")]
    InvalidSignature,
    /// The message id is empty, longer than 256 bytes or not visible ASCII: unusable as an
    /// idempotency key.
    #[error("invalid webhook id")]
    InvalidId,
}

impl From<WebhookError> for VerifyError {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::MissingHeader(_) => VerifyError::MissingHeaders,
            WebhookError::InvalidTimestamp => VerifyError::InvalidTimestamp,
            WebhookError::TimestampTooOldError | WebhookError::FutureTimestampError => {
                VerifyError::StaleTimestamp
            }
            _ => VerifyError::InvalidSignature,
        }
    }
}

/// Verifies webhooks against every configured secret. Built once, shared.
pub struct Verifier {
    /// One verifier per secret, tried in order.
    webhooks: Vec<Webhook>,
}

// === impl Verifier ===

impl Verifier {
    /// A verifier accepting a signature by any of `secrets`.
    pub fn new(secrets: &[SigningSecret]) -> Self {
        let webhooks = secrets
            .iter()
            .filter_map(|s| Webhook::from_bytes(s.key.clone()).ok())
            .collect();
        Verifier { webhooks }
    }

    /// Checks the signature headers against the raw body, before anything parses it.
    ///
    /// # Errors
    /// [`VerifyError`] naming the first thing wrong.
    pub fn verify(&self, headers: &HeaderMap, body: Bytes) -> Result<VerifiedWebhook, VerifyError> {
        self.check_signature(headers, &body, true)?;
        self.verified(headers, body)
    }

    /// As [`Verifier::verify`], without the timestamp tolerance: for published test vectors only.
    ///
    /// # Errors
    /// [`VerifyError`] naming the first thing wrong.
    pub fn verify_ignoring_timestamp(
        &self,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<VerifiedWebhook, VerifyError> {
        self.check_signature(headers, &body, false)?;
        self.verified(headers, body)
    }

    fn check_signature(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        enforce_tolerance: bool,
    ) -> Result<(), VerifyError> {
        for webhook in &self.webhooks {
            let result = if enforce_tolerance {
                webhook.verify(body, headers)
            } else {
                webhook.verify_ignoring_timestamp(body, headers)
            };
            match result.map_err(VerifyError::from) {
                Ok(()) => return Ok(()),
                // Another secret may have signed it.
                Err(VerifyError::InvalidSignature) => {}
                // Header and timestamp problems do not depend on the secret.
                Err(other) => return Err(other),
            }
        }
        Err(VerifyError::InvalidSignature)
    }

    fn verified(&self, headers: &HeaderMap, body: Bytes) -> Result<VerifiedWebhook, VerifyError> {
        let message_id = message_id(headers)?;
        if std::str::from_utf8(&body).is_err() {
            return Err(VerifyError::InvalidSignature);
        }
        Ok(VerifiedWebhook { message_id, body })
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &self.webhooks.len())
            .finish()
    }
}

/// Checks what can be checked before the body is read, with the same rules as the `svix` crate's
/// full check: the three headers are present, the id is usable, the timestamp is within five
/// minutes of `now_secs` and the signature header carries a `v1` signature. A request failing here
/// is refused without buffering its body, so an unsigned or replayed request costs no memory.
///
/// # Errors
/// [`VerifyError`] naming the first thing wrong.
pub fn check_headers(headers: &HeaderMap, now_secs: i64) -> Result<(), VerifyError> {
    message_id(headers)?;
    let signature = header(headers, SIGNATURE_HEADERS).ok_or(VerifyError::MissingHeaders)?;
    let timestamp = header(headers, TIMESTAMP_HEADERS).ok_or(VerifyError::MissingHeaders)?;
    let timestamp = timestamp
        .to_str()
        .ok()
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|t| *t >= 0)
        .ok_or(VerifyError::InvalidTimestamp)?;
    if timestamp.abs_diff(now_secs) > TOLERANCE_SECS.unsigned_abs() {
        return Err(VerifyError::StaleTimestamp);
    }
    let has_v1 = signature.to_str().is_ok_and(|s| {
        s.split(' ').any(|part| {
            part.split_once(',')
                .is_some_and(|(v, sig)| v == "v1" && !sig.is_empty())
        })
    });
    if !has_v1 {
        return Err(VerifyError::InvalidSignature);
    }
    Ok(())
}

/// The first of `names` present in `headers`.
fn header<'a>(headers: &'a HeaderMap, names: [&str; 2]) -> Option<&'a http::HeaderValue> {
    names.iter().find_map(|name| headers.get(*name))
}

/// The message id, read from the same header the signature check used.
fn message_id(headers: &HeaderMap) -> Result<String, VerifyError> {
    let value = header(headers, ID_HEADERS).ok_or(VerifyError::MissingHeaders)?;
    let id = value.to_str().map_err(|_| VerifyError::InvalidId)?;
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(VerifyError::InvalidId);
    }
    Ok(id.to_owned())
}

#[cfg(test)]
mod tests;
