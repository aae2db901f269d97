//! `rocky jobs`: the jobs as a table or JSON, read straight from the store (the data
//! directory's database read-only, or the PostgreSQL database `store.url` names), so it works
//! while Rocky runs; or, with `--server`, from a running Rocky's API (one elsewhere, or the
//! demo, which keeps no store).

use clap::Args;

use super::GlobalArgs;
use super::setup::{data_dir, load_config};
use rocky::engine::{JobId, JobState};
use rocky::snapshot::JobSnapshot;

#[derive(Args, Debug)]
pub struct JobsArgs {
    #[command(flatten)]
    pub config: super::ConfigFlag,
    #[command(flatten)]
    pub data_dir: super::DataDirFlag,
    #[command(flatten)]
    pub server: super::api_client::ServerArgs,

    /// Only jobs in this state (queued, requesting, transferring, finishing, succeeded, rejected,
    /// failed, timed_out, cancelled).
    #[arg(long)]
    pub state: Option<JobState>,
    /// Only jobs for this device.
    #[arg(long)]
    pub device: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(global: &GlobalArgs, args: JobsArgs) -> anyhow::Result<()> {
    let state = args.state;
    let config = load_config(global)?.config;
    if args.server.server.is_some() {
        let jobs = from_api(&config, &args).await?;
        return print(&jobs, args.json);
    }
    let postgres = rocky::config::postgres_settings(&config, |var| std::env::var(var).ok())?;
    let dir = if postgres.is_some() { std::path::PathBuf::new() } else { data_dir(&config)? };
    let stored = rocky::service::stored_jobs(postgres.as_ref(), &dir).await?;
    let jobs = match stored {
        Ok(jobs) => jobs,
        // A Rocky that never ran here has recorded no jobs: that is the answer, not an error.
        Err(location) => {
            if args.json {
                println!("[]");
            } else {
                println!(
                    "no jobs yet (the job store {location} does not exist; for a Rocky running elsewhere, or the \
                     demo, name it with --server URL)"
                );
            }
            return Ok(());
        }
    };
    let jobs: Vec<JobSnapshot> = jobs
        .into_iter()
        .filter(|j| {
            state.is_none_or(|s| s == j.state)
                && args.device.as_ref().is_none_or(|d| d == j.device_id.as_str())
        })
        .collect();
    print(&jobs, args.json)
}

/// Every job the server lists (page by page), with the filters applied by the server.
async fn from_api(config: &rocky::config::Config, args: &JobsArgs) -> anyhow::Result<Vec<JobSnapshot>> {
    use super::api_client::encode;
    let api = super::api_client::ApiClient::for_args(config, &args.server)?;
    let mut query = String::new();
    if let Some(state) = args.state {
        query.push_str(&format!("&state={}", state.as_str()));
    }
    if let Some(device) = &args.device {
        query.push_str(&format!("&device={}", encode(device)));
    }
    let mut jobs = Vec::new();
    let mut after: Option<JobId> = None;
    loop {
        let cursor = after.map(|a| format!("&after={a}")).unwrap_or_default();
        let (_, page) =
            api.call(reqwest::Method::GET, &format!("/jobs?limit=10000{query}{cursor}"), None).await?;
        let page: rocky::api::JobPage = serde_json::from_value(page)
            .map_err(|e| anyhow::anyhow!("the server's jobs are not readable: {e}"))?;
        jobs.extend(page.jobs);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(jobs),
        }
    }
}

fn print(jobs: &[JobSnapshot], json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&jobs)?);
        return Ok(());
    }
    // Ids grow with time: the column is as wide as the widest shown.
    let id_w = jobs.iter().map(|j| j.id.to_string().len()).max().unwrap_or(2).max(2);
    println!(
        "{:>id_w$}  {:<16} {:<24} {:<12} {:>15}  {:>4}  ERROR",
        "ID", "DEVICE", "IMAGE", "STATE", "CHUNKS", "ATT"
    );
    for j in jobs {
        let chunks = format!("{}/{}", j.chunks_done, j.chunks_total);
        println!(
            "{:>id_w$}  {:<16} {:<24} {:<12} {:>15}  {:>4}  {}",
            j.id,
            rocky::text::clip(&rocky::text::printable(j.device_id.as_str()), 16),
            rocky::text::clip(&j.image.name, 24),
            j.state.as_str(),
            chunks,
            j.attempts,
            j.error.as_deref().unwrap_or("")
        );
    }
    println!("{} {}", jobs.len(), if jobs.len() == 1 { "job" } else { "jobs" });
    Ok(())
}
