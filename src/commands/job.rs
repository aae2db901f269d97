//! `rocky job create|show|cancel`: single jobs on a running Rocky through its API, so no one
//! needs curl for them. `rocky jobs` lists them.

use anyhow::Context;
use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::api_client::{ApiClient, CreateFlags, ServerArgs, firmware_source};
use super::setup::load_config;
use rocky::api::{CreateJobs, CreatedJobs, Timeline};
use rocky::engine::JobId;
use rocky::snapshot::{HistoryRecord, JobSnapshot};

#[derive(Args, Debug)]
pub struct JobArgs {
    #[command(flatten)]
    pub config: super::ConfigFlagAnywhere,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: JobCommand,
}

#[derive(Subcommand, Debug)]
pub enum JobCommand {
    /// Update devices with an image: one job each.
    Create(CreateArgs),
    /// One job and its timeline.
    Show {
        // Read as a u32 (clap's words for a bad number, as before), held as a job id.
        #[arg(value_parser = clap::value_parser!(u32).map(JobId::new))]
        id: JobId,
        #[arg(long)]
        json: bool,
    },
    /// Cancel a job that has not ended; nothing more is sent for it.
    Cancel {
        #[arg(value_parser = clap::value_parser!(u32).map(JobId::new))]
        id: JobId,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Devices by id, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub devices: Vec<String>,
    /// A local file (uploaded first), an http(s):// URL, a SHA-256 the server holds, or a path
    /// in the server's firmware directory.
    #[arg(long)]
    pub firmware: String,
    #[command(flatten)]
    pub flags: CreateFlags,
}

pub async fn run(global: &GlobalArgs, args: JobArgs) -> anyhow::Result<()> {
    let config = load_config(global)?.config;
    let api = ApiClient::for_args(&config, &args.server)?;
    match args.command {
        JobCommand::Create(create) => {
            let firmware = firmware_source(&api, &create.firmware).await?;
            let devices: Vec<&str> =
                create.devices.iter().map(|d| d.trim()).filter(|d| !d.is_empty()).collect();
            let request = CreateJobs {
                device_ids: Some(devices.iter().map(ToString::to_string).collect()),
                firmware,
                ..CreateJobs::default()
            };
            let mut body = serde_json::to_value(&request)?;
            create.flags.add_to(&mut body);
            let (_, answer) = api
                .call(Method::POST, "/jobs", Some(("application/json", serde_json::to_vec(&body)?)))
                .await?;
            if create.flags.json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                let created: CreatedJobs =
                    serde_json::from_value(answer.clone()).context("the server's jobs are not readable")?;
                for job in &created.jobs {
                    println!(
                        "job {} created: {} to {}",
                        job.id,
                        job.image.name,
                        rocky::text::printable(job.device_id.as_str())
                    );
                }
            }
            if let Some(warning) = answer["warning"].as_str() {
                eprintln!("warning: {warning}");
            }
        }
        JobCommand::Show { id, json } => {
            let (_, job) = api.call(Method::GET, &format!("/jobs/{id}"), None).await?;
            // A Rocky without a store (the demo) keeps no timeline: the job is shown anyway.
            let events = api.call(Method::GET, &format!("/jobs/{id}/events"), None).await.map(|(_, e)| e);
            if json {
                let events = events.as_ref().map_or(Value::Null, |e| e["events"].clone());
                println!("{}", serde_json::to_string_pretty(&json!({ "job": job, "events": events }))?);
                return Ok(());
            }
            let job: JobSnapshot = serde_json::from_value(job).context("the server's job is not readable")?;
            print_job(&job);
            match events {
                Ok(events) => {
                    let timeline: Timeline =
                        serde_json::from_value(events).context("the server's timeline is not readable")?;
                    println!("timeline:");
                    for record in &timeline.events {
                        println!("  {}", timeline_line(record));
                    }
                }
                Err(e) => println!("timeline: not available ({e})"),
            }
        }
        JobCommand::Cancel { id } => {
            let (_, job) = api.call(Method::DELETE, &format!("/jobs/{id}"), None).await?;
            println!("job {id} {}", job["state"].as_str().unwrap_or("cancelled"));
        }
    }
    Ok(())
}

fn print_job(job: &JobSnapshot) {
    println!(
        "job {}: {} to {}, {}",
        job.id,
        job.image.name,
        rocky::text::printable(job.device_id.as_str()),
        job.state.label()
    );
    println!("  image    {} ({} bytes, sha256 {})", job.image.name, job.image.size, job.image.sha256);
    let confirmed = job.chunks_confirmed.map(|c| format!(", {c} confirmed")).unwrap_or_default();
    println!(
        "  chunks   {} of {} sent{confirmed}, {} bytes each",
        job.chunks_done, job.chunks_total, job.chunk_size
    );
    println!("  attempts {}", job.attempts);
    if let Some(delta) = &job.delta {
        println!(
            "  delta    a patch of {} bytes from {} (the image is {} bytes)",
            delta.patch_size,
            rocky::protocol::sha256_hex(&delta.base),
            job.image.size
        );
    }
    match (&job.manifest, &job.aws) {
        (_, Some(aws)) => println!("  signed   {}", aws.signing_words()),
        (Some(m), None) => {
            let version =
                m.payload().version.as_deref().map(|v| format!(", version {v}")).unwrap_or_default();
            println!("  manifest signed by key {} ({}){version}, seq {}", m.kid(), m.alg(), m.payload().seq);
        }
        (None, None) => println!("  manifest none (an unsigned image)"),
    }
    if let Some(error) = &job.error {
        println!("  error    {error}");
    }
}

/// `time  state — detail` of one timeline entry, with its attempt when it has one.
fn timeline_line(record: &HistoryRecord) -> String {
    let detail = record.detail.as_deref().map(|d| format!(" — {d}")).unwrap_or_default();
    let attempt = record.attempt.map(|a| format!(" (attempt {a})")).unwrap_or_default();
    format!("{}  {}{attempt}{detail}", rocky::units::utc_ms(record.at), record.state.as_str())
}
