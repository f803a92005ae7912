//! Verification against the published Standard Webhooks / Svix test vectors.

use super::*;
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/standard-webhooks-vectors.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn payload(vector: &Value) -> String {
    match vector.get("payload_repeat") {
        Some(rep) => rep["char"]
            .as_str()
            .unwrap()
            .repeat(usize::try_from(rep["count"].as_u64().unwrap()).unwrap()),
        None => vector["payload"].as_str().unwrap().to_owned(),
    }
}

fn headers(prefix: &str, id: &str, ts: i64, signature: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        format!("{prefix}-id").parse::<http::HeaderName>().unwrap(),
        id.parse().unwrap(),
    );
    h.insert(
        format!("{prefix}-timestamp")
            .parse::<http::HeaderName>()
            .unwrap(),
        ts.to_string().parse().unwrap(),
    );
    h.insert(
        format!("{prefix}-signature")
            .parse::<http::HeaderName>()
            .unwrap(),
        signature.parse().unwrap(),
    );
    h
}

fn verifier(secret: &str) -> Verifier {
    Verifier::new(&SigningSecret::parse_list(secret).unwrap())
}

#[test]
fn every_v1_vector_verifies_with_both_header_families() {
    let v = vectors();
    let list = v["v1_vectors"].as_array().unwrap();
    assert!(list.len() >= 5);
    for vector in list {
        let verifier = verifier(vector["secret"].as_str().unwrap());
        let (id, ts) = (
            vector["msg_id"].as_str().unwrap(),
            vector["timestamp"].as_i64().unwrap(),
        );
        let sig = vector["expected_signature"].as_str().unwrap();
        for prefix in ["svix", "webhook"] {
            let body = Bytes::from(payload(vector));
            let verified = verifier
                .verify_ignoring_timestamp(&headers(prefix, id, ts, sig), body.clone())
                .unwrap_or_else(|e| panic!("{} ({prefix}): {e}", vector["name"]));
            assert_eq!(verified.message_id(), id);
            assert_eq!(verified.body().as_bytes(), &body[..]);
            // The vectors are years old: with the tolerance enforced they are stale.
            assert_eq!(
                verifier
                    .verify(&headers(prefix, id, ts, sig), body)
                    .unwrap_err(),
                VerifyError::StaleTimestamp
            );
        }
    }
}

#[test]
fn a_tampered_payload_id_or_timestamp_fails() {
    let v = vectors();
    let vector = &v["v1_vectors"][0];
    let verifier = verifier(vector["secret"].as_str().unwrap());
    let (id, ts) = (
        vector["msg_id"].as_str().unwrap(),
        vector["timestamp"].as_i64().unwrap(),
    );
    let sig = vector["expected_signature"].as_str().unwrap();
    let body = Bytes::from(payload(vector));
    let tampered_body = Bytes::from(format!("{} ", payload(vector)));
    let cases = [
        (headers("svix", id, ts, sig), tampered_body),
        (headers("svix", "msg_other", ts, sig), body.clone()),
        (headers("svix", id, ts + 1, sig), body),
    ];
    for (h, b) in cases {
        assert_eq!(
            verifier.verify_ignoring_timestamp(&h, b).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }
}

#[test]
fn known_invalid_signatures_fail() {
    let v = vectors();
    let vector = &v["v1_vectors"][0];
    let verifier = verifier(vector["secret"].as_str().unwrap());
    let (id, ts) = (
        vector["msg_id"].as_str().unwrap(),
        vector["timestamp"].as_i64().unwrap(),
    );
    for bad in v["known_invalid_signatures"].as_array().unwrap() {
        let sig = bad["signature"].as_str().unwrap();
        let result = verifier
            .verify_ignoring_timestamp(&headers("svix", id, ts, sig), Bytes::from(payload(vector)));
        assert_eq!(result.unwrap_err(), VerifyError::InvalidSignature, "{sig}");
    }
}

#[test]
fn a_valid_signature_among_decoys_verifies_and_decoys_alone_fail() {
    let v = vectors();
    let vector = &v["v1_vectors"][0];
    let verifier = verifier(vector["secret"].as_str().unwrap());
    let (id, ts) = (
        vector["msg_id"].as_str().unwrap(),
        vector["timestamp"].as_i64().unwrap(),
    );
    let decoys: Vec<&str> = v["decoy_signatures_for_multi_signature_tests"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let mut mixed = decoys.clone();
    mixed.insert(2, vector["expected_signature"].as_str().unwrap());
    let body = Bytes::from(payload(vector));
    assert!(
        verifier
            .verify_ignoring_timestamp(&headers("svix", id, ts, &mixed.join(" ")), body.clone())
            .is_ok()
    );
    assert_eq!(
        verifier
            .verify_ignoring_timestamp(&headers("svix", id, ts, &decoys.join(" ")), body)
            .unwrap_err(),
        VerifyError::InvalidSignature
    );
}

#[test]
fn any_configured_secret_may_sign() {
    let v = vectors();
    let vector = &v["v1_vectors"][0];
    let other = v["v1_vectors"][1]["secret"].as_str().unwrap();
    let both = format!("{other}, {}", vector["secret"].as_str().unwrap());
    let (id, ts) = (
        vector["msg_id"].as_str().unwrap(),
        vector["timestamp"].as_i64().unwrap(),
    );
    let sig = vector["expected_signature"].as_str().unwrap();
    let body = Bytes::from(payload(vector));
    assert!(
        verifier(&both)
            .verify_ignoring_timestamp(&headers("svix", id, ts, sig), body.clone())
            .is_ok()
    );
    assert_eq!(
        verifier(other)
            .verify_ignoring_timestamp(&headers("svix", id, ts, sig), body)
            .unwrap_err(),
        VerifyError::InvalidSignature
    );
}

#[test]
fn missing_headers_are_reported() {
    let verifier = verifier("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_eq!(
        verifier
            .verify(&HeaderMap::new(), Bytes::from_static(b"{}"))
            .unwrap_err(),
        VerifyError::MissingHeaders
    );
}

#[test]
fn secret_parsing_follows_the_published_cases() {
    let v = vectors();
    let cases = &v["secret_parsing_cases"];
    for unpadded in cases["accepted_unpadded_by_python_lib"].as_array().unwrap() {
        assert!(
            SigningSecret::try_new(unpadded.as_str().unwrap()).is_ok(),
            "{unpadded}"
        );
    }
    for empty in cases["empty_secrets_must_be_rejected"].as_array().unwrap() {
        assert_eq!(
            SigningSecret::try_new(empty.as_str().unwrap()).unwrap_err(),
            InvalidSecret::Empty
        );
    }
    assert_eq!(
        SigningSecret::try_new("whsec_!!!").unwrap_err(),
        InvalidSecret::NotBase64
    );
    assert_eq!(
        SigningSecret::parse_list(" , ").unwrap_err(),
        InvalidSecret::Empty
    );
    assert_eq!(
        SigningSecret::parse_list("whsec_AAAA whsec_BBBB,whsec_CCCC")
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn debug_output_never_shows_the_key() {
    let secret = SigningSecret::try_new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let shown = format!(
        "{secret:?} {:?}",
        Verifier::new(std::slice::from_ref(&secret))
    );
    assert!(!shown.contains("MfKQ"), "{shown}");
}
