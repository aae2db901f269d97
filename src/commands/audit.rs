//! `rocky audit`: who changed what on a running Rocky (`GET /audit`), oldest first, filtered by
//! time, actor and target; a table, or JSON lines with `--json`. Pages are printed as they
//! arrive, so a long trail streams into `head` or `grep`.

use anyhow::Context;
use clap::Args;
use reqwest::Method;

use super::GlobalArgs;
use super::api_client::{ApiClient, ServerArgs, encode};
use super::setup::load_config;
use rocky::audit::{Entry, Page};

#[derive(Args, Debug)]
pub struct AuditArgs {
    #[command(flatten)]
    pub config: super::ConfigFlagAnywhere,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Only entries since: Unix milliseconds or a span back like 10m, 2h, 7d.
    #[arg(long, value_name = "WHEN")]
    pub since: Option<String>,
    /// Only this actor's entries (a token's name, or console:USER@HOST).
    #[arg(long, value_name = "NAME")]
    pub actor: Option<String>,
    /// Only entries about this target, e.g. rollout:3, job:12, device:dev-1.
    #[arg(long, value_name = "TARGET")]
    pub target: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: AuditArgs) -> anyhow::Result<()> {
    let config = load_config(global)?.config;
    let api = ApiClient::for_args(&config, &args.server)?;
    let mut filters: Vec<String> = Vec::new();
    let named = [("since", &args.since), ("actor", &args.actor), ("target", &args.target)];
    for (key, value) in named {
        if let Some(value) = value {
            filters.push(format!("{key}={}", encode(value)));
        }
    }
    let mut after: Option<i64> = None;
    let mut printed = 0usize;
    loop {
        let mut pairs = filters.clone();
        pairs.push(format!("limit={}", rocky::audit::MAX_PAGE));
        pairs.extend(after.map(|a| format!("after={a}")));
        let (_, value) = api.call(Method::GET, &format!("/audit?{}", pairs.join("&")), None).await?;
        let page: Page = serde_json::from_value(value).context("the server's audit page is not readable")?;
        for entry in &page.entries {
            if args.json {
                println!("{}", serde_json::to_string(entry)?);
            } else {
                if printed == 0 {
                    println!("{}", header());
                }
                println!("{}", row(entry));
            }
            printed += 1;
        }
        match page.next_after {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if printed == 0 && !args.json {
        eprintln!("no audit entries match");
    }
    Ok(())
}

fn header() -> String {
    format!("{:<23}  {:<20}  {:<17}  {:<20}  OUTCOME", "TIME", "ACTOR", "ACTION", "TARGET")
}

fn row(entry: &Entry) -> String {
    let at = u64::try_from(entry.at).map_or_else(|_| entry.at.to_string(), rocky::units::utc);
    format!("{at:<23}  {:<20}  {:<17}  {:<20}  {}", entry.actor, entry.action, entry.target, entry.outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_lines_up_under_the_header() {
        let entry = Entry {
            id: 1,
            at: 1_700_000_000_000,
            actor: "ci".into(),
            action: "rollout.pause".into(),
            target: "rollout:3".into(),
            outcome: "ok".into(),
        };
        let (header, row) = (header(), row(&entry));
        assert_eq!(header.find("ACTOR"), row.find("ci"));
        assert_eq!(header.find("OUTCOME"), row.find("ok"));
        assert!(row.starts_with("2023-11-14 22:13:20 UTC"), "{row}");
    }
}
