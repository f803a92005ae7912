//! `clerk-bridge consumers list|reset|delete`: administration of named durable consumers.

use clap::{Args, Subcommand};

use super::GrpcClientArgs;
use crate::proto::{
    ConsumerInfo, DeleteConsumerRequest, ListConsumersRequest, ResetConsumerRequest, StartPosition,
    event_stream_client::EventStreamClient,
};

/// Flags of `clerk-bridge consumers`.
#[derive(Debug, Args)]
pub struct ConsumersArgs {
    /// Where the bridge is.
    #[command(flatten)]
    pub bridge: GrpcClientArgs,
    /// The action to run.
    #[command(subcommand)]
    pub action: ConsumersAction,
}

/// `clerk-bridge consumers` actions.
#[derive(Debug, Subcommand)]
pub enum ConsumersAction {
    /// Show every consumer with its committed sequence and lag.
    List,
    /// Move a consumer (its stream must be closed).
    Reset {
        /// The consumer's name.
        name: String,
        /// `earliest`, `latest`, or a sequence to resume after.
        #[arg(long, value_parser = parse_target)]
        to: ResetTarget,
    },
    /// Forget a consumer and its position (its stream must be closed).
    Delete {
        /// The consumer's name.
        name: String,
    },
}

/// Where `consumers reset --to` moves a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetTarget {
    /// Earliest, latest, or after a sequence.
    pub position: StartPosition,
    /// The sequence, for [`StartPosition::AfterSequence`].
    pub after_sequence: u64,
}

/// Runs one `consumers` action and prints its result to stdout.
///
/// # Errors
/// When the bridge cannot be reached or refuses the request (the gRPC status message says why).
pub async fn run(args: ConsumersArgs) -> anyhow::Result<()> {
    let mut client = EventStreamClient::new(args.bridge.connect().await?);
    match args.action {
        ConsumersAction::List => {
            let list = client
                .list_consumers(ListConsumersRequest {})
                .await?
                .into_inner();
            print!("{}", table(&list.consumers));
        }
        ConsumersAction::Reset { name, to } => {
            let request = ResetConsumerRequest {
                consumer: name.clone(),
                position: to.position.into(),
                after_sequence: to.after_sequence,
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
fn parse_target(to: &str) -> Result<ResetTarget, String> {
    let (position, after_sequence) = match to {
        "earliest" => (StartPosition::Earliest, 0),
        "latest" => (StartPosition::Latest, 0),
        n => n
            .parse()
            .map(|seq| (StartPosition::AfterSequence, seq))
            .map_err(|_| "expected earliest, latest or a sequence".to_owned())?,
    };
    Ok(ResetTarget {
        position,
        after_sequence,
    })
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
        let target = |position, after_sequence| ResetTarget {
            position,
            after_sequence,
        };
        assert_eq!(
            parse_target("earliest"),
            Ok(target(StartPosition::Earliest, 0))
        );
        assert_eq!(parse_target("latest"), Ok(target(StartPosition::Latest, 0)));
        assert_eq!(
            parse_target("42"),
            Ok(target(StartPosition::AfterSequence, 42))
        );
        assert!(parse_target("soon").is_err());
        assert!(parse_target("-1").is_err());
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
