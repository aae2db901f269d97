//! `rocky rollout`: staged rollouts on a running Rocky, through its API: `create` (or its dry
//! run), `list`, `show`, `watch`, `pause`, `resume`, `cancel`.

use clap::builder::TypedValueParser;
use clap::{Args, Subcommand};
use reqwest::Method;
use rocky::rollout::{RolloutId, RolloutView};
use rocky::units::plural;
use serde_json::{Value, json};

use super::GlobalArgs;
use super::api_client::{ApiClient, CreateFlags, ServerArgs};
use super::setup::load_config;
use rocky::service::RolloutVerb;

#[derive(Args, Debug)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub config: super::ConfigFlagAnywhere,

    #[command(flatten)]
    pub server: ServerArgs,
    #[command(subcommand)]
    pub command: RolloutCommand,
}

#[derive(Subcommand, Debug)]
pub enum RolloutCommand {
    /// Starts a rollout of one image to devices picked by id, pattern or labels.
    Create(Box<CreateArgs>),
    /// The rollouts, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// One rollout: its waves and every device's outcome.
    Show {
        // Read as a u64 (clap's words for a bad number, as before), held as a rollout id.
        #[arg(value_parser = clap::value_parser!(u64).map(RolloutId::new))]
        id: RolloutId,
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Every device's outcome as CSV: device_id,outcome,job_id,attempts,detail.
        #[arg(long)]
        csv: bool,
    },
    /// Follows a rollout until it ends: exits 0 when it succeeds, 1 when it completes with
    /// devices not updated, 2 when it is aborted or cancelled (for a CI pipeline to wait on).
    Watch {
        #[arg(value_parser = clap::value_parser!(u64).map(RolloutId::new))]
        id: RolloutId,
    },
    /// Stops starting jobs (active ones finish).
    Pause {
        #[arg(value_parser = clap::value_parser!(u64).map(RolloutId::new))]
        id: RolloutId,
    },
    /// Goes on: through a manual gate, or past a wave under the success threshold.
    Resume {
        #[arg(value_parser = clap::value_parser!(u64).map(RolloutId::new))]
        id: RolloutId,
    },
    /// Cancels the rollout and its active jobs.
    Cancel {
        #[arg(value_parser = clap::value_parser!(u64).map(RolloutId::new))]
        id: RolloutId,
    },
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// A name to know it by.
    #[arg(long)]
    pub name: String,
    /// A local file (uploaded first), an http(s):// URL, a SHA-256 the server holds, or a path
    /// in the server's firmware directory.
    #[arg(long)]
    pub firmware: String,
    /// Devices by id, comma-separated, in the order they should update.
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["glob", "label"])]
    pub devices: Vec<String>,
    /// Devices in the inventory whose id matches (* and ?), e.g. 'dev-*'.
    #[arg(long, conflicts_with = "label")]
    pub glob: Option<String>,
    /// Devices in the inventory with this label (KEY=VALUE; repeat: all must match).
    #[arg(long, value_name = "KEY=VALUE")]
    pub label: Vec<String>,
    /// Where waves end, counted from the start: device counts or shares, e.g. 1,10%,50%,100%.
    #[arg(long, value_delimiter = ',')]
    pub waves: Vec<String>,
    /// Job starts a minute across the rollout, evenly spread.
    #[arg(long)]
    pub max_per_minute: Option<u32>,
    /// Jobs of this rollout active at once.
    #[arg(long)]
    pub max_concurrent: Option<u32>,
    /// The share of a wave that must succeed for the next to start: 95% or 0.95 (the default).
    #[arg(long, value_parser = rocky::rollout::parse_share, value_name = "SHARE")]
    pub success_threshold: Option<f64>,
    /// Abort once this share of finished devices failed: 20% or 0.2.
    #[arg(long, value_name = "SHARE", value_parser = rocky::rollout::parse_share)]
    pub abort_share: Option<f64>,
    /// Devices that must have finished before --abort-share is judged (default 10).
    #[arg(long, requires = "abort_share", value_name = "N")]
    pub abort_min: Option<u32>,
    /// Tries again a failed or timed-out device this many times.
    #[arg(long)]
    pub retries: Option<u32>,
    /// Every wave waits for `rocky rollout resume`.
    #[arg(long)]
    pub manual_gates: bool,
    /// Devices whose last succeeded image is this one are not updated.
    #[arg(long)]
    pub skip_up_to_date: bool,
    /// Whole images even to devices that take patches (the delta extension).
    #[arg(long)]
    pub no_delta: bool,
    /// When it may start: RFC 3339 (2026-12-04T02:00:00+01:00) or Unix ms; until then it is
    /// `scheduled`.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// A maintenance window jobs start in, e.g. 'mon,tue,wed 02:00-05:00 Europe/Berlin'
    /// (repeat for more).
    #[arg(long, value_name = "DAYS START-END TZ")]
    pub window: Vec<String>,
    /// Print the plan (waves, devices skipped, refused or not heard from, bytes and time) and
    /// create nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub flags: CreateFlags,
}

pub async fn run(global: &GlobalArgs, args: RolloutArgs) -> anyhow::Result<()> {
    let config = load_config(global)?.config;
    let api = ApiClient::for_args(&config, &args.server)?;
    match args.command {
        RolloutCommand::Create(create) => {
            let (json_out, dry_run) = (create.flags.json, create.dry_run);
            let body = request(&api, *create).await?;
            let path = if dry_run { "/rollouts?dry_run=true" } else { "/rollouts" };
            let (_, rollout) =
                api.call(Method::POST, path, Some(("application/json", serde_json::to_vec(&body)?))).await?;
            if dry_run && rollout["dry_run"] != true {
                // A server that does not know dry runs ignores the flag and creates the rollout.
                anyhow::bail!(
                    "the server does not know dry runs and CREATED rollout {} (cancel it with rocky rollout cancel {})",
                    num(&rollout["id"]),
                    num(&rollout["id"])
                );
            }
            if dry_run && !json_out {
                let run: rocky::service::RolloutDryRun = serde_json::from_value(rollout.clone())
                    .map_err(|e| anyhow::anyhow!("the server's dry run could not be read: {e}"))?;
                print_dry_run(&run);
            } else if json_out {
                println!("{}", serde_json::to_string_pretty(&rollout)?);
            } else {
                let devices = rollout["device_count"].as_u64().unwrap_or(0);
                let waves = rollout["waves"].as_array().map_or(0, Vec::len);
                println!(
                    "rollout {} created: {}, {}, {}",
                    num(&rollout["id"]),
                    plural(devices as usize, "device"),
                    plural(waves, "wave"),
                    rollout["state"].as_str().unwrap_or("?")
                );
            }
            // On stderr, so a script reading the answer is not disturbed.
            if let Some(warning) = rollout["warning"].as_str() {
                eprintln!("warning: {warning}");
            }
        }
        RolloutCommand::List { json } => {
            let (_, body) = api.call(Method::GET, "/rollouts", None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&body["rollouts"])?);
            } else {
                let rollouts: Vec<RolloutView> = serde_json::from_value(body["rollouts"].clone())
                    .map_err(|e| anyhow::anyhow!("the server's rollouts are not readable: {e}"))?;
                print_list(&rollouts);
            }
        }
        RolloutCommand::Show { id, csv: true, .. } => super::rollout_watch::csv(&api, id).await?,
        RolloutCommand::Watch { id } => {
            let code = super::rollout_watch::watch(&api, id).await?;
            std::process::exit(code);
        }
        RolloutCommand::Show { id, json, .. } => {
            let (_, rollout) = api.call(Method::GET, &format!("/rollouts/{id}"), None).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rollout)?);
            } else {
                let view: RolloutView = serde_json::from_value(rollout.clone())
                    .map_err(|e| anyhow::anyhow!("the server's rollout is not readable: {e}"))?;
                print_rollout(&rollout, &view);
            }
        }
        RolloutCommand::Pause { id } => control(&api, id, RolloutVerb::Pause).await?,
        RolloutCommand::Resume { id } => control(&api, id, RolloutVerb::Resume).await?,
        RolloutCommand::Cancel { id } => control(&api, id, RolloutVerb::Cancel).await?,
    }
    Ok(())
}

async fn control(api: &ApiClient, id: RolloutId, verb: RolloutVerb) -> anyhow::Result<()> {
    let (_, rollout) = api.call(Method::POST, &format!("/rollouts/{id}/{}", verb.as_str()), None).await?;
    println!(
        "rollout {id}: {}{}",
        rollout["state"].as_str().unwrap_or("?"),
        rollout["reason"].as_str().map(|r| format!(" ({r})")).unwrap_or_default()
    );
    Ok(())
}

/// The request body; a local firmware file is uploaded first and named by its hash.
async fn request(api: &ApiClient, args: CreateArgs) -> anyhow::Result<Value> {
    let firmware = super::api_client::firmware_source(api, &args.firmware).await?;
    let targets = if !args.devices.is_empty() {
        json!({ "devices": args.devices })
    } else if let Some(glob) = args.glob {
        json!({ "glob": glob })
    } else if !args.label.is_empty() {
        let mut labels = serde_json::Map::new();
        for pair in &args.label {
            let (key, value) =
                rocky::inventory::labels::parse_pair(pair).map_err(|e| anyhow::anyhow!("--label: {e}"))?;
            labels.insert(key, Value::String(value));
        }
        json!({ "labels": labels })
    } else {
        anyhow::bail!("name the devices: --devices a,b, --glob 'dev-*' or --label model=esp32-c3");
    };
    let waves: Vec<Value> = args
        .waves
        .iter()
        .map(|w| w.trim())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse::<u64>().map_or_else(|_| Value::String(w.to_owned()), Value::from))
        .collect();
    let mut body = json!({ "name": args.name, "firmware": firmware, "targets": targets });
    let mut set = |key: &str, value: Value| {
        if !value.is_null() {
            body[key] = value;
        }
    };
    set("waves", if waves.is_empty() { Value::Null } else { json!(waves) });
    set("max_per_minute", json!(args.max_per_minute));
    set("max_concurrent", json!(args.max_concurrent));
    set("success_threshold", json!(args.success_threshold));
    set("retries", json!(args.retries));
    if args.manual_gates {
        set("gates", json!("manual"));
    }
    if args.skip_up_to_date {
        set("skip_up_to_date", json!(true));
    }
    if args.no_delta {
        set("delta", json!(false));
    }
    if !args.window.is_empty() {
        let windows = args.window.iter().map(|w| window_arg(w)).collect::<anyhow::Result<Vec<Value>>>()?;
        set("windows", json!(windows));
    }
    if let Some(at) = &args.start_at {
        set("start_at", at.trim().parse::<u64>().map_or_else(|_| json!(at), |ms| json!(ms)));
    }
    if let Some(share) = args.abort_share {
        set("abort", json!({ "failure_share": share, "min_finished": args.abort_min.unwrap_or(10) }));
    }
    args.flags.add_to(&mut body);
    Ok(body)
}

/// A JSON number as text ("-" when absent), so column widths apply.
fn num(value: &Value) -> String {
    value.as_u64().map_or_else(|| "-".to_owned(), |n| n.to_string())
}

/// The widest NAME column before names are cut.
const NAME_WIDTH_MAX: usize = 40;

fn print_list(rollouts: &[RolloutView]) {
    // As wide as the longest name shown (up to a bound), so every later column lines up.
    let name_w = rollouts.iter().map(|r| r.name.chars().count()).max().unwrap_or(0).clamp(24, NAME_WIDTH_MAX);
    println!(
        "{:>4}  {:<name_w$} {:<10} {:>10}  {:>6}  {:>9}  {:>6}  REASON",
        "ID", "NAME", "STATE", "WAVE", "DEVICES", "SUCCEEDED", "FAILED"
    );
    for r in rollouts {
        let sum = |count: fn(&rocky::rollout::WaveView) -> usize| r.waves.iter().map(count).sum::<usize>();
        println!(
            "{:>4}  {:<name_w$} {:<10} {:>10}  {:>6}  {:>9}  {:>6}  {}",
            r.id,
            rocky::text::clip(&r.name, name_w),
            r.state.as_str(),
            r.wave_label(),
            r.device_count,
            sum(|w| w.counts.succeeded),
            sum(|w| w.counts.failed),
            r.reason.as_deref().unwrap_or("")
        );
    }
    println!("{}", plural(rollouts.len(), "rollout"));
}

fn print_rollout(r: &Value, view: &RolloutView) {
    println!("rollout {}  {}", num(&r["id"]), r["name"].as_str().unwrap_or(""));
    println!(
        "state    {}{}",
        r["state"].as_str().unwrap_or(""),
        r["reason"].as_str().map(|x| format!(": {x}")).unwrap_or_default()
    );
    println!(
        "image    {} ({} bytes, sha256 {})",
        r["image"]["name"].as_str().unwrap_or(""),
        r["image"]["size"],
        r["image"]["sha256"].as_str().unwrap_or("")
    );
    println!("rules    {}", view.settings.in_words());
    if let Some(eta) = view.eta_ms {
        println!(
            "eta      about {} left",
            rocky::tui::format::duration(std::time::Duration::from_millis(eta))
        );
    }
    match view.bytes_note() {
        Some(note) => println!("bytes    {note}"),
        None => println!("bytes    sent {}", rocky::units::bytes(view.bytes.sent)),
    }
    println!("created  {}", rocky::units::utc(view.created_at));
    println!();
    println!(
        "{:>5}  {:>7}  {:>7}  {:>6}  {:>9}  {:>6}  {:>9}",
        "WAVE", "DEVICES", "PENDING", "ACTIVE", "SUCCEEDED", "FAILED", "CANCELLED"
    );
    for w in r["waves"].as_array().map(Vec::as_slice).unwrap_or_default() {
        println!(
            "{:>5}  {:>7}  {:>7}  {:>6}  {:>9}  {:>6}  {:>9}",
            num(&w["wave"]),
            num(&w["devices"]),
            num(&w["pending"]),
            num(&w["active"]),
            num(&w["succeeded"]),
            num(&w["failed"]),
            num(&w["cancelled"])
        );
    }
    if let Some(note) = view.confirm_note() {
        println!("       of which {note}");
    }
    println!();
    let devices = r["devices"].as_array().map(Vec::as_slice).unwrap_or_default();
    let width = devices
        .iter()
        .filter_map(|d| d["device_id"].as_str())
        .map(|d| rocky::text::printable(d).chars().count())
        .max()
        .unwrap_or(6)
        .max(6);
    println!("{:<width$}  {:<10}  {:>6}  {:>5}  DETAIL", "DEVICE", "OUTCOME", "JOB", "TRIES");
    for d in devices {
        let job = d["job_id"].as_u64().map_or("-".to_owned(), |j| j.to_string());
        let line = format!(
            "{:<width$}  {:<10}  {:>6}  {:>5}  {}",
            rocky::text::printable(d["device_id"].as_str().unwrap_or("")),
            d["outcome"].as_str().unwrap_or("").replace('_', " "),
            job,
            num(&d["attempts"]),
            d["detail"].as_str().unwrap_or("")
        );
        println!("{}", line.trim_end());
    }
    let changes = view.changes.as_deref().unwrap_or_default();
    if !changes.is_empty() {
        println!();
        println!("history");
        for change in changes {
            println!(
                "  {}  {} → {}: {}",
                rocky::units::utc(change.at),
                change.from.as_str(),
                change.to.as_str(),
                change.reason
            );
        }
    }
}

/// A dry run as an operator reads it: each list with its count and the first ten ids.
fn print_dry_run(run: &rocky::service::RolloutDryRun) {
    for line in run.in_words(10) {
        println!("{line}");
    }
}

/// `--window 'mon,tue 02:00-05:00 Europe/Berlin'` as the request's window (the server checks it).
fn window_arg(text: &str) -> anyhow::Result<Value> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [days, times, tz] = parts.as_slice() else {
        anyhow::bail!("--window {text:?}: write DAYS START-END TZ, e.g. 'mon,tue 02:00-05:00 Europe/Berlin'");
    };
    let (start, end) = times
        .split_once('-')
        .ok_or_else(|| anyhow::anyhow!("--window {text:?}: the times are START-END, e.g. 02:00-05:00"))?;
    let days: Vec<&str> = days.split(',').filter(|d| !d.is_empty()).collect();
    Ok(json!({"days": days, "start": start, "end": end, "tz": tz}))
}
