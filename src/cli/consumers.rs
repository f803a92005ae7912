//! `clerk-bridge consumers list|reset|delete`: administration of named durable consumers.

use crate::{
    config::{ConsumersAction, ConsumersArgs},
    proto::{
        ConsumerInfo, DeleteConsumerRequest, ListConsumersRequest, ResetConsumerRequest,
        StartPosition, event_stream_client::EventStreamClient,
    },
};

/// Runs one `consumers` action and prints its result to stdout.
///
/// # Errors
/// When the bridge cannot be reached or refuses the request (the gRPC status message says why).
pub async fn run(args: ConsumersArgs) -> anyhow::Result<()> {
    let mut client = EventStreamClient::new(super::connect(&args.grpc_addr).await?);
    match args.action {
        ConsumersAction::List => {
            let list = client
                .list_consumers(ListConsumersRequest {})
                .await?
                .into_inner();
            print!("{}", table(&list.consumers));
        }
        ConsumersAction::Reset { name, to } => {
            let (position, after_sequence) = parse_target(&to)?;
            let request = ResetConsumerRequest {
                consumer: name.clone(),
                position: position.into(),
                after_sequence,
            };
            let reset = client.reset_consumer(request).await?.into_inner();
            println!(
                "{name}: committed sequence is now {}",
                reset.committed_sequence
            );
        }
        ConsumersAction::Delete { name } => {
            client
                .delete_consumer(DeleteConsumerRequest {
                    consumer: name.clone(),
                })
                .await?;
            println!("{name}: deleted");
        }
    }
    Ok(())
}

/// `earliest`, `latest` or a sequence number.
fn parse_target(to: &str) -> anyhow::Result<(StartPosition, u64)> {
    match to {
        "earliest" => Ok((StartPosition::Earliest, 0)),
        "latest" => Ok((StartPosition::Latest, 0)),
        n => n
            .parse()
            .map(|seq| (StartPosition::AfterSequence, seq))
            .map_err(|_| {
                anyhow::anyhow!("invalid --to {to:?}: expected earliest, latest or a sequence")
            }),
    }
}

/// One line per consumer under a header.
fn table(consumers: &[ConsumerInfo]) -> String {
    let mut out = format!(
        "{:<32} {:>12} {:>10} {:>7}\n",
        "NAME", "COMMITTED", "LAG", "ACTIVE"
    );
    for c in consumers {
        out.push_str(&format!(
            "{:<32} {:>12} {:>10} {:>7}\n",
            c.name, c.committed_sequence, c.lag, c.active
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            parse_target("earliest").unwrap(),
            (StartPosition::Earliest, 0)
        );
        assert_eq!(parse_target("latest").unwrap(), (StartPosition::Latest, 0));
        assert_eq!(
            parse_target("42").unwrap(),
            (StartPosition::AfterSequence, 42)
        );
        assert!(
            parse_target("soon")
                .unwrap_err()
                .to_string()
                .contains("--to")
        );
    }

    #[test]
    fn table_lists_each_consumer() {
        let c = ConsumerInfo {
            name: "billing".into(),
            committed_sequence: 7,
            lag: 3,
            active: true,
            ..Default::default()
        };
        let out = table(&[c]);
        assert!(out.lines().nth(1).unwrap().starts_with("billing"));
        assert!(out.contains(" 7 ") && out.contains(" 3 ") && out.contains("true"));
    }
}
