//! A minimal subscriber: streams events from a running bridge and prints one line per event.
//!
//! ```text
//! cargo run --example subscribe -- [GRPC_URL] [AFTER_SEQUENCE] [TYPE_PATTERN...]
//! cargo run --example subscribe -- http://127.0.0.1:50051 0 'user.*'
//! ```
//! A real consumer applies each event to its database and stores `event.sequence` in the same
//! transaction, then resumes with `after_sequence` = that stored sequence after a restart: see
//! `sync_sqlite.rs`. To watch a bridge, `clerk-bridge tail` does more than this.

use clerk_bridge::proto::{
    SubscribeRequest, event::Payload, event_stream_client::EventStreamClient,
    subscribe_response::Message, user_event::Change,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".to_owned());
    let after_sequence = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let event_types: Vec<String> = args.collect();

    let mut client = EventStreamClient::connect(url).await?;
    let request = SubscribeRequest {
        after_sequence,
        event_types,
        ..Default::default()
    };
    let mut stream = client.subscribe(request).await?.into_inner();
    while let Some(message) = stream.message().await? {
        match message.message {
            Some(Message::Event(event)) => {
                println!(
                    "#{} {} {} {}",
                    event.sequence,
                    event.r#type,
                    event.object_id,
                    describe(event.payload.as_ref())
                );
            }
            Some(Message::Heartbeat(hb)) => eprintln!("(heartbeat, head {})", hb.head_sequence),
            Some(Message::Start(start)) => eprintln!(
                "(streaming after #{}, log holds #{}..#{})",
                start.after_sequence, start.first_retained_sequence, start.head_sequence
            ),
            Some(Message::CaughtUp(c)) => {
                eprintln!("(caught up at #{}; live from here)", c.head_sequence)
            }
            Some(Message::SnapshotEnd(end)) => eprintln!(
                "(snapshot of {} objects, consistent at #{})",
                end.objects, end.sequence
            ),
            None => {}
        }
    }
    Ok(())
}

/// A short description of the typed payload, without personal data.
fn describe(payload: Option<&Payload>) -> String {
    let Some(Payload::User(user)) = payload else {
        return String::new();
    };
    match &user.change {
        Some(Change::Created(u)) => {
            format!("created, {} email address(es)", u.email_addresses.len())
        }
        Some(Change::Updated(u)) => {
            format!("updated, {} email address(es)", u.email_addresses.len())
        }
        Some(Change::Deleted(_)) => "deleted".to_owned(),
        None => String::new(),
    }
}
