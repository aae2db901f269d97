//! `rocky devices`: the inventory of a running Rocky, through its API: `list` (filters by label,
//! pattern and time), `show`, `label` (set or remove labels) and `import` (JSON or lines of
//! `device_id,key=value,…`).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use reqwest::Method;

use super::GlobalArgs;
use super::api_client::{ApiClient, ServerArgs, encode};
use super::setup::load_config;
use rocky::api::{DevicePage, Imported, PutDevice};
use rocky::inventory::{Device, Labels, labels};

#[derive(Args, Debug)]
pub struct DevicesArgs {
    #[command(flatten)]
    pub config: super::ConfigFlagAnywhere,

    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: DevicesCommand,
}

/// A device id as the protocol takes it, checked before anything is asked of the server (an
/// empty one made a path the server did not know: "no such endpoint").
fn device_id(text: &str) -> Result<String, String> {
    rocky::protocol::DeviceId::parse(text).map(|id| id.as_str().to_owned()).map_err(|e| e.to_string())
}

#[derive(Subcommand, Debug)]
pub enum DevicesCommand {
    /// The devices Rocky knows, by id.
    List {
        /// Only devices with this label (KEY=VALUE; repeat for several, all must match).
        #[arg(long, value_name = "KEY=VALUE")]
        label: Vec<String>,
        /// Only ids matching this pattern (* and ?), e.g. 'dev-*'.
        #[arg(long, value_name = "PATTERN")]
        glob: Option<String>,
        /// Only devices heard from since: Unix milliseconds or a span like 10m, 2h, 7d.
        #[arg(long, value_name = "WHEN")]
        seen_since: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One device.
    Show {
        #[arg(value_parser = device_id)]
        device_id: String,
        #[arg(long)]
        json: bool,
    },
    /// Sets labels on a device (registering it if it is new); --remove takes labels off.
    Label {
        #[arg(value_parser = device_id)]
        device_id: String,
        /// KEY=VALUE pairs to set.
        #[arg(value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Keys to remove.
        #[arg(long, value_name = "KEY")]
        remove: Vec<String>,
    },
    /// Registers many devices at once from FILE (- for standard input): JSON
    /// `[{"device_id": "d1", "labels": {"model": "m1"}}, …]` or lines of `device_id,key=value,…`.
    /// A bad row refuses the whole import, naming its line.
    Import { file: PathBuf },
}

pub async fn run(global: &GlobalArgs, args: DevicesArgs) -> anyhow::Result<()> {
    let config = load_config(global)?.config;
    let api = ApiClient::for_args(&config, &args.server)?;
    match args.command {
        DevicesCommand::List { label, glob, seen_since, json } => {
            let mut query = Vec::new();
            for pair in &label {
                labels::parse_pair(pair).map_err(|e| anyhow::anyhow!("--label: {e}"))?;
                query.push(("label", pair.clone()));
            }
            query.extend(glob.map(|g| ("glob", g)));
            query.extend(seen_since.map(|s| ("seen_since", s)));
            let devices = list_all(&api, &query).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&devices)?);
            } else {
                print_table(&devices);
            }
        }
        DevicesCommand::Show { device_id, json } => {
            let (_, value) = api.call(Method::GET, &format!("/devices/{}", encode(&device_id)), None).await?;
            let device: Device =
                serde_json::from_value(value).context("the server's device is not readable")?;
            if json {
                println!("{}", serde_json::to_string_pretty(&device)?);
            } else {
                print_device(&device);
            }
        }
        DevicesCommand::Label { device_id, set, remove } => {
            let path = format!("/devices/{}", encode(&device_id));
            let mut current: Labels = match api.call(Method::GET, &path, None).await {
                Ok((_, value)) => {
                    serde_json::from_value::<Device>(value).map(|d| d.labels).unwrap_or_default()
                }
                // Removing labels from a device nobody registered would register it.
                Err(e) if e.to_string().ends_with("(HTTP 404)") && set.is_empty() => anyhow::bail!(
                    "no device {} is registered: there is no label to remove (KEY=VALUE registers it)",
                    rocky::text::printable(&device_id)
                ),
                Err(e) if e.to_string().ends_with("(HTTP 404)") => Labels::new(),
                Err(e) => return Err(e),
            };
            for pair in &set {
                let (key, value) = labels::parse_pair(pair)?;
                current.insert(key, value);
            }
            for key in &remove {
                current.remove(key);
            }
            let body = serde_json::to_vec(&PutDevice { labels: current, profile: None })?;
            let (status, value) = api.call(Method::PUT, &path, Some(("application/json", body))).await?;
            let device: Device =
                serde_json::from_value(value).context("the server's device is not readable")?;
            let verb = if status == 201 { "registered" } else { "updated" };
            println!(
                "{verb} {}: {}",
                rocky::text::printable(device.device_id.as_str()),
                format_labels(&device.labels)
            );
        }
        DevicesCommand::Import { file } => {
            let bytes = if file.as_os_str() == "-" {
                let mut bytes = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut bytes)
                    .context("reading standard input")?;
                bytes
            } else {
                std::fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?
            };
            let text = String::from_utf8(bytes)
                .map_err(|_| anyhow::anyhow!("{} is not UTF-8 text", file.display()))?;
            // Checked here first, so a mistake is shown with its line before anything is sent.
            rocky::inventory::import::parse(&text)?;
            let content_type =
                if text.trim_start().starts_with('[') { "application/json" } else { "text/csv" };
            let (_, value) =
                api.call(Method::POST, "/devices/import", Some((content_type, text.into_bytes()))).await?;
            let done: Imported =
                serde_json::from_value(value).context("the server's import answer is not readable")?;
            println!(
                "imported {} ({} new, {} updated)",
                rocky::units::plural(done.imported, "device"),
                done.added,
                done.updated
            );
        }
    }
    Ok(())
}

/// Every page of `GET /devices`.
async fn list_all(api: &ApiClient, query: &[(&str, String)]) -> anyhow::Result<Vec<Device>> {
    let mut devices = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut pairs: Vec<String> = query.iter().map(|(k, v)| format!("{k}={}", encode(v))).collect();
        pairs.extend(after.as_ref().map(|a| format!("after={}", encode(a))));
        let path =
            if pairs.is_empty() { "/devices".to_owned() } else { format!("/devices?{}", pairs.join("&")) };
        let (_, value) = api.call(Method::GET, &path, None).await?;
        let page: DevicePage =
            serde_json::from_value(value).context("the server's device list is not readable")?;
        devices.extend(page.devices);
        match page.next_after {
            Some(next) => after = Some(next),
            None => return Ok(devices),
        }
    }
}

fn format_labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "no labels".into();
    }
    labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

fn when(ms: Option<u64>) -> String {
    ms.map_or_else(|| "never".into(), rocky::units::utc)
}

/// "rocky (Rocky's protocol)" or "aws-iot-ota (AWS's OTA agent)".
fn profile_words(profile: rocky::inventory::Profile) -> String {
    match profile {
        rocky::inventory::Profile::Rocky => "rocky (Rocky's protocol)".into(),
        rocky::inventory::Profile::AwsIotOta => "aws-iot-ota (AWS's OTA agent)".into(),
    }
}

fn print_table(devices: &[Device]) {
    let id_width = devices
        .iter()
        .map(|d| rocky::text::printable(d.device_id.as_str()).chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "{:<id_width$}  {:<11}  {:<23}  {:<10}  {:<30}  LABELS",
        "DEVICE", "PROFILE", "LAST SEEN", "LAST JOB", "LAST IMAGE"
    );
    for d in devices {
        let image =
            d.last_image.as_ref().map_or("-".to_owned(), |i| format!("{} {}", i.name, i.short_hash()));
        let job = d.last_job.map_or("-".to_owned(), |j| j.to_string());
        println!(
            "{:<id_width$}  {:<11}  {:<23}  {:<10}  {:<30}  {}",
            rocky::text::printable(d.device_id.as_str()),
            d.profile.as_str(),
            when(d.last_seen),
            job,
            image,
            format_labels(&d.labels)
        );
    }
    println!("{} {}", devices.len(), if devices.len() == 1 { "device" } else { "devices" });
}

fn print_device(d: &Device) {
    println!("device      {}", rocky::text::printable(d.device_id.as_str()));
    println!("registered  {}", if d.registered { "yes" } else { "no (seen on the wire or sent a job)" });
    println!("labels      {}", format_labels(&d.labels));
    println!("profile     {}", profile_words(d.profile));
    println!("first seen  {}", when(d.first_seen));
    println!("last seen   {}", when(d.last_seen));
    println!("last job    {}", d.last_job.map_or("none".to_owned(), |j| j.to_string()));
    match &d.last_image {
        Some(i) => println!("last image  {} ({} bytes, sha256 {})", i.name, i.size, i.sha256),
        None => println!("last image  none succeeded yet"),
    }
}
