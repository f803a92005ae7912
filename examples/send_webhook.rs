//! Signs a Clerk event with your signing secret and posts it to a bridge, as Clerk (Svix) would.
//!
//! ```text
//! CLERK_WEBHOOK_SIGNING_SECRET=whsec_... cargo run --example send_webhook -- [PAYLOAD.json] [URL]
//! ```
//! Without a file it sends a sample `user.created` with a fresh user id and message id.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

const DEFAULT_URL: &str = "http://127.0.0.1:8080/webhooks/clerk";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let secret = std::env::var("CLERK_WEBHOOK_SIGNING_SECRET")
        .map_err(|_| "set CLERK_WEBHOOK_SIGNING_SECRET to the bridge's secret")?;
    let mut args = std::env::args().skip(1);
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let body = match args.next() {
        Some(path) if path != "-" => std::fs::read_to_string(path)?,
        _ => sample_user_created(now.as_millis()),
    };
    let url: hyper::Uri = args.next().as_deref().unwrap_or(DEFAULT_URL).parse()?;

    let msg_id = format!("msg_{:x}", now.as_nanos());
    let timestamp = i64::try_from(now.as_secs())?;
    // The first secret of a rotation list signs.
    let first_secret = secret
        .split([' ', ','])
        .find(|s| !s.is_empty())
        .unwrap_or_default();
    let signature =
        svix::webhooks::Webhook::new(first_secret)?.sign(&msg_id, timestamp, body.as_bytes())?;

    let authority = url.authority().ok_or("URL needs a host and port")?.clone();
    let stream = TcpStream::connect(authority.as_str()).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = Request::post(url.path())
        .header("host", authority.as_str())
        .header("content-type", "application/json")
        .header("svix-id", &msg_id)
        .header("svix-timestamp", timestamp.to_string())
        .header("svix-signature", signature)
        .body(Full::new(Bytes::from(body)))?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let answer = response.into_body().collect().await?.to_bytes();
    println!("{msg_id}: {status} {}", String::from_utf8_lossy(&answer));
    Ok(())
}

/// A `user.created` event shaped like Clerk's, with a fresh user id.
fn sample_user_created(now_ms: u128) -> String {
    serde_json::json!({
        "object": "event",
        "type": "user.created",
        "timestamp": now_ms,
        "instance_id": "ins_example",
        "data": {
            "object": "user",
            "id": format!("user_example{now_ms}"),
            "first_name": "Ada",
            "last_name": "Lovelace",
            "primary_email_address_id": "idn_example",
            "email_addresses": [{
                "id": "idn_example",
                "object": "email_address",
                "email_address": "ada@example.com",
                "verification": {"status": "verified", "strategy": "email_code"},
                "linked_to": []
            }],
            "image_url": "https://img.clerk.com/example",
            "has_image": false,
            "public_metadata": {"plan": "pro"},
            "private_metadata": {},
            "unsafe_metadata": {},
            "created_at": now_ms,
            "updated_at": now_ms
        }
    })
    .to_string()
}
