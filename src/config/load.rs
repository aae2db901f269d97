//! Reading and layering the sources.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use super::Config;
use super::model::Invalid;

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File { path: PathBuf, line: Option<usize> },
    Env(String),
    Flag(&'static str),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File { path, line: Some(line) } => write!(f, "{} line {line}", path.display()),
            Source::File { path, line: None } => write!(f, "{}", path.display()),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::Flag(flag) => write!(f, "flag {flag}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{var}: {reason}")]
    Env { var: String, reason: String },
    #[error("{key} ({origin}): {reason}")]
    Invalid { key: &'static str, origin: Source, reason: String },
}

/// The effective configuration and where each value came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: Config,
    pub file: Option<PathBuf>,
    /// Dotted key (`jobs.max_active`) → source, for every key.
    pub sources: BTreeMap<String, Source>,
}

impl Loaded {
    /// `key = value  # source` lines grouped by section, as `rocky config` prints them.
    pub fn render(&self) -> String {
        let table = toml::Value::try_from(&self.config).ok();
        let mut out = String::new();
        out.push_str(&match &self.file {
            Some(path) => format!("# effective configuration; file: {}\n", path.display()),
            None => "# effective configuration; no config file\n".to_owned(),
        });
        let mut section = "";
        for (key, source) in &self.sources {
            let Some((sec, name)) = key.split_once('.') else { continue };
            if sec != section {
                out.push_str(&format!("\n[{sec}]\n"));
                section = sec;
            }
            let value = table
                .as_ref()
                .and_then(|t| t.get(sec))
                .and_then(|s| s.get(name))
                .map_or_else(|| "?".to_owned(), shown);
            out.push_str(&format!("{:<36} # {source}\n", format!("{name} = {value}")));
        }
        let origin = self.sources.get("notify").map_or_else(|| "default".to_owned(), ToString::to_string);
        for receiver in &self.config.notify {
            // The URL's path and query may hold a token: not shown.
            out.push_str(&format!("\n[[notify]]                           # {origin}\n"));
            out.push_str(&format!("url = {:?}\n", receiver.shown_url()));
            out.push_str(&format!("events = {:?}\n", receiver.events));
            out.push_str(&format!("secret_file = {:?}\n", receiver.secret_file));
        }
        out
    }
}

/// A value as a person writes it in the file: seconds that are whole without the `.0` TOML
/// gives every float (`86400`, as the README shows them; a whole number reads back as seconds).
fn shown(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(f) if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{f:.0}"),
        other => other.to_string(),
    }
}

/// The platform's config file location (`~/.config/rocky/rocky.toml` on Linux).
pub fn default_config_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "rocky").map(|d| d.config_dir().join("rocky.toml"))
}

/// The platform's data directory (`~/.local/share/rocky` on Linux).
pub fn default_data_dir() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "rocky").map(|d| d.data_dir().to_path_buf())
}

/// Layers defaults, the file (`explicit`, else the platform default if it exists), the
/// environment (looked up through `env`) and `flags` (dotted key → value).
pub fn load(
    explicit: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
    flags: &[(&'static str, &'static str, toml::Value)],
) -> Result<Loaded, ConfigError> {
    let file = match explicit {
        Some(path) => Some(path.to_path_buf()),
        None => default_config_path().filter(|p| p.is_file()),
    };
    let text = match &file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|source| ConfigError::Read { path: path.clone(), source })?,
        ),
        None => None,
    };
    layer(file, text.as_deref(), env, flags)
}

/// The built-in defaults as TOML sections and keys: what the layering starts from, and the one
/// list of the settings' names.
fn defaults_table() -> Result<toml::Table, ConfigError> {
    let defaults = toml::Value::try_from(Config::default())
        .map_err(|e| ConfigError::Parse { path: PathBuf::from("(defaults)"), message: e.to_string() })?;
    match defaults {
        toml::Value::Table(table) => Ok(table),
        _ => Err(ConfigError::Parse { path: PathBuf::from("(defaults)"), message: "not a table".into() }),
    }
}

/// Refuses a variable that names a section of the settings (`ROCKY_JOBS_…`) but none of its
/// keys, as a misspelled key in the file is refused: `ROCKY_JOBS_MAX_ACTIVEE=3` would otherwise
/// change nothing, without a word. Variables of other prefixes (`ROCKY_REQUIRE_…` of the tests)
/// are not Rocky's settings and pass.
pub fn check_env_names<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Result<(), ConfigError> {
    let defaults = defaults_table()?;
    let secrets = [
        super::secrets::MQTT_PASSWORD_ENV,
        super::secrets::HTTP_TOKEN_ENV,
        super::secrets::STORE_PASSWORD_ENV,
    ];
    let sections: Vec<(String, Vec<String>)> = defaults
        .iter()
        .map(|(section, keys)| {
            let vars = keys
                .as_table()
                .into_iter()
                .flat_map(|t| t.keys())
                .map(|key| format!("ROCKY_{}_{}", section.to_uppercase(), key.to_uppercase()))
                .collect::<Vec<_>>();
            // The section's secret comes from a variable of its own; it is listed too.
            let prefix = format!("ROCKY_{}_", section.to_uppercase());
            let vars = vars
                .into_iter()
                .chain(secrets.iter().filter(|s| s.starts_with(&prefix)).map(|s| (*s).to_owned()))
                .collect();
            (section.clone(), vars)
        })
        .collect();
    for name in names {
        let name = name.as_ref();
        if secrets.contains(&name) {
            continue;
        }
        for (section, vars) in &sections {
            let prefix = format!("ROCKY_{}_", section.to_uppercase());
            if name.starts_with(&prefix) && !vars.iter().any(|var| var == name) {
                let known = if vars.is_empty() { "none".to_owned() } else { vars.join(", ") };
                return Err(ConfigError::Env {
                    var: name.to_owned(),
                    reason: format!("[{section}] has no such setting (its variables: {known})"),
                });
            }
        }
    }
    Ok(())
}

/// The layering itself, given the file's text: what [`load`] does after reading the file, and
/// what the config fuzz target drives with arbitrary text.
pub fn layer(
    file: Option<PathBuf>,
    file_text: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
    flags: &[(&'static str, &'static str, toml::Value)],
) -> Result<Loaded, ConfigError> {
    let mut merged = defaults_table()?;
    let mut sources = BTreeMap::new();
    for (section, keys) in &merged {
        for key in keys.as_table().into_iter().flat_map(|t| t.keys()) {
            sources.insert(format!("{section}.{key}"), Source::Default);
        }
    }

    if let (Some(path), Some(file_text)) = (&file, file_text) {
        let table: toml::Table = toml::from_str(file_text)
            .map_err(|e| ConfigError::Parse { path: path.clone(), message: syntax_error(&e, file_text) })?;
        // Before the typed parse, whose errors quote the offending line: a secret typed into
        // the file must not be echoed back.
        refuse_secrets(&table, file_text, path)?;
        // Parsing into the typed model gives errors with the line, column and key. With more
        // than one mistake, each key is tried on its own, so one run names them all.
        if let Err(e) = toml::from_str::<Config>(file_text) {
            let mistakes = every_mistake(&table, file_text, &merged);
            let message = if mistakes.len() > 1 {
                format!("{} mistakes:\n  {}", mistakes.len(), mistakes.join("\n  "))
            } else {
                crate::units::plain_words(&e.to_string())
            };
            return Err(ConfigError::Parse { path: path.clone(), message });
        }
        for (section, keys) in table {
            // The one list of tables (`[[notify]]`): taken whole.
            if let toml::Value::Array(_) = &keys
                && matches!(merged.get(&section), Some(toml::Value::Array(_)))
            {
                let line = text_line(file_text, &format!("[[{section}]]"));
                sources.insert(section.clone(), Source::File { path: path.clone(), line });
                merged.insert(section, keys);
                continue;
            }
            for (key, value) in keys.as_table().into_iter().flatten() {
                let line = line_of(file_text, &section, key);
                sources.insert(format!("{section}.{key}"), Source::File { path: path.clone(), line });
                set(&mut merged, &section, key, value.clone());
            }
        }
    }

    let keys: Vec<String> = sources.keys().cloned().collect();
    for dotted in keys {
        let var = format!("ROCKY_{}", dotted.replace('.', "_").to_uppercase());
        let Some(raw) = env(&var) else { continue };
        let Some((section, key)) = dotted.split_once('.') else { continue };
        let default = merged.get(section).and_then(|s| s.get(key)).cloned();
        let value =
            coerce(default.as_ref(), &raw).map_err(|reason| ConfigError::Env { var: var.clone(), reason })?;
        set(&mut merged, section, key, value);
        sources.insert(dotted, Source::Env(var));
    }

    for (dotted, flag, value) in flags {
        if let Some((section, key)) = dotted.split_once('.') {
            set(&mut merged, section, key, value.clone());
            sources.insert((*dotted).to_owned(), Source::Flag(flag));
        }
    }

    let config: Config =
        toml::Value::Table(merged).try_into().map_err(|e: toml::de::Error| ConfigError::Parse {
            path: file.clone().unwrap_or_else(|| PathBuf::from("(environment)")),
            message: e.to_string(),
        })?;
    config.validate().map_err(|Invalid { key, reason }| ConfigError::Invalid {
        key,
        origin: sources.get(key).cloned().unwrap_or(Source::Default),
        reason,
    })?;
    Ok(Loaded { config, file, sources })
}

/// A key that looks like a secret (`password`, `token`, `secret`) but is not a `*_file` setting
/// is refused with its name and line only: secrets come from files or the environment.
fn refuse_secrets(table: &toml::Table, text: &str, path: &Path) -> Result<(), ConfigError> {
    for (section, keys) in table {
        // A section's keys, or every entry's of a list of tables (`[[notify]]`).
        let tables: Vec<&toml::Table> = match keys {
            toml::Value::Array(entries) => entries.iter().filter_map(toml::Value::as_table).collect(),
            other => other.as_table().into_iter().collect(),
        };
        for key in tables.into_iter().flat_map(|t| t.keys()) {
            let lower = key.to_lowercase();
            let secret_like = ["password", "passwd", "token", "secret", "private", "signing_key"]
                .iter()
                .any(|w| lower.contains(w));
            if secret_like && !lower.ends_with("_file") {
                let line = line_of(text, section, key).map(|l| format!(" (line {l})")).unwrap_or_default();
                return Err(ConfigError::Parse {
                    path: path.to_owned(),
                    message: format!(
                        "{section}.{key}{line}: secrets are not read from the config file (its value is not \
                         shown); use mqtt.password_file or ROCKY_MQTT_PASSWORD, http.token_file or ROCKY_HTTP_TOKEN, \
                         store.password_file or ROCKY_STORE_PASSWORD, firmware.signing_key_file, a [[notify]] secret_file"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// Each key of the file tried alone over the defaults: what is wrong with it, by line.
fn every_mistake(table: &toml::Table, text: &str, defaults: &toml::Table) -> Vec<String> {
    let mut mistakes = Vec::new();
    for (section, keys) in table {
        if let (toml::Value::Array(_), Some(toml::Value::Array(_))) = (keys, defaults.get(section)) {
            let mut one = defaults.clone();
            one.insert(section.clone(), keys.clone());
            if let Err(e) = toml::Value::Table(one).try_into::<Config>() {
                let line = text_line(text, &format!("[[{section}]]"))
                    .map(|l| format!("line {l}: "))
                    .unwrap_or_default();
                mistakes.push(format!("{line}[[{section}]]: {}", crate::units::plain_words(e.message())));
            }
            continue;
        }
        let Some(keys) = keys.as_table() else {
            mistakes.push(format!("{section} is a key outside any section; put it under its [section]"));
            continue;
        };
        if !defaults.contains_key(section) {
            let known: Vec<&str> = defaults.keys().map(String::as_str).collect();
            mistakes.push(format!("[{section}] is not a section; the sections are {}", known.join(", ")));
            continue;
        }
        for (key, value) in keys {
            let mut one = defaults.clone();
            match one.get_mut(section) {
                Some(toml::Value::Table(sec)) => {
                    sec.insert(key.clone(), value.clone());
                }
                _ => continue,
            }
            if let Err(e) = toml::Value::Table(one).try_into::<Config>() {
                let line = line_of(text, section, key).map(|l| format!("line {l}: ")).unwrap_or_default();
                mistakes.push(format!("{line}{section}.{key}: {}", crate::units::plain_words(e.message())));
            }
        }
    }
    mistakes
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    if let Some(toml::Value::Table(sec)) = table.get_mut(section) {
        sec.insert(key.to_owned(), value);
    }
}

/// Reads an environment string as the type the key's default has.
fn coerce(default: Option<&toml::Value>, raw: &str) -> Result<toml::Value, String> {
    match default {
        Some(toml::Value::Integer(_)) => raw
            .trim()
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("expected a whole number, got {raw:?}")),
        Some(toml::Value::Float(_)) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| format!("expected a number, got {raw:?}")),
        // Lists from the environment are comma-separated.
        Some(toml::Value::Array(_)) => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_owned()))
                .collect(),
        )),
        Some(toml::Value::Boolean(_)) => raw
            .trim()
            .parse::<bool>()
            .map(toml::Value::Boolean)
            .map_err(|_| format!("expected true or false, got {raw:?}")),
        _ => Ok(toml::Value::String(raw.to_owned())),
    }
}

/// The 1-based line where `key` is set inside `[section]`, for messages that point at it.
fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (index, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(header) = trimmed.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            // `[section]`, or `[[list]]` for an entry of a list of tables.
            current = header.trim_start_matches('[').trim_end_matches(']').trim().to_owned();
        } else if current == section
            && trimmed.split_once('=').is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        {
            return Some(index + 1);
        }
    }
    None
}

/// A TOML syntax error in words. It quotes the line it is on, unless the file has `[[notify]]`
/// receivers: a receiver's URL may hold a token in its path, so then only the line and column
/// are said.
fn syntax_error(error: &toml::de::Error, text: &str) -> String {
    if !text.contains("[[notify]]") {
        return error.to_string();
    }
    let at = error.span().map_or(0, |span| span.start).min(text.len());
    let before = text.get(..at).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(
        "line {line}, column {column}: {} (the line is not shown: it may hold a receiver's URL)",
        error.message()
    )
}

/// The line (from 1) where `needle` first starts a line, e.g. `[[notify]]`.
fn text_line(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|line| line.trim_start().starts_with(needle)).map(|index| index + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_variable_naming_a_section_but_none_of_its_keys_is_refused() {
        assert!(check_env_names(["ROCKY_JOBS_MAX_ACTIVE", "ROCKY_AWS_OTA_CERTFILE", "HOME"]).is_ok());
        // Secrets, and variables of other prefixes (the tests' ROCKY_REQUIRE_…), pass.
        assert!(
            check_env_names(["ROCKY_MQTT_PASSWORD", "ROCKY_HTTP_TOKEN", "ROCKY_REQUIRE_POSTGRES"]).is_ok()
        );
        let err = check_env_names(["PATH", "ROCKY_JOBS_MAX_ACTIVEE"]).unwrap_err().to_string();
        assert!(err.starts_with("ROCKY_JOBS_MAX_ACTIVEE: [jobs] has no such setting"), "{err}");
        assert!(err.contains("ROCKY_JOBS_MAX_ACTIVE,"), "the section's variables are listed: {err}");
        let err = check_env_names(["ROCKY_AWS_OTA_CERTFILES"]).unwrap_err().to_string();
        assert!(err.contains("[aws_ota]"), "{err}");
        let err = check_env_names(["ROCKY_HTTP_TOKN"]).unwrap_err().to_string();
        assert!(err.contains("ROCKY_HTTP_TOKEN"), "the secret's variable is suggested too: {err}");
    }

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rocky.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn notify_receivers_are_read_whole_checked_by_place_and_shown_without_their_path() {
        let text = "[http]\nmax_jobs_per_request = 10\n\n[[notify]]\nurl = \"https://hooks.example/T0/B0/tok3n\"\n\
                    events = [\"rollout\", \"job_failed\"]\nsecret_file = \"/etc/rocky/hook\"\n\n\
                    [[notify]]\nurl = \"http://127.0.0.1:9000/rocky\"\nsecret_file = \"/s\"\n";
        let (_dir, path) = write(text);
        let loaded = load(Some(&path), no_env, &[]).unwrap();
        let notify = &loaded.config.notify;
        assert_eq!(notify.len(), 2);
        assert_eq!(notify[0].events, ["rollout", "job_failed"]);
        assert_eq!(notify[1].events, ["rollout", "job_failed", "rolled_back"], "every event unless named");
        assert_eq!(loaded.config.http.max_jobs_per_request, 10);
        let shown = loaded.render();
        assert!(shown.contains("https://hooks.example/…") && !shown.contains("tok3n"), "{shown}");
        assert!(shown.contains("line 4"), "{shown}");

        let (_dir, path) = write("[[notify]]\nurl = \"ftp://x/\"\nsecret_file = \"/s\"\n");
        let error = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(error.contains("notify[0].url"), "{error}");
        let (_dir, path) = write("[[notify]]\nurl = \"http://x/\"\nsecret = \"s3cr3t\"\n");
        let error = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(error.contains("notify.secret (line 3): secrets are not read"), "{error}");
        assert!(!error.contains("s3cr3t"), "{error}");
        let (_dir, path) = write("[mqtt]\ncolour = 1\n[[notify]]\nurl = \"http://x/\"\ncolour = 1\n");
        let error = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(error.contains("line 3: [[notify]]") && error.contains("colour"), "{error}");
        let (_dir, path) =
            write("[[notify]]\nurl = \"https://hooks.example/T0/tok3n\nsecret_file = \"/s\"\n");
        let error = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(error.contains("line 2, column") && !error.contains("tok3n"), "{error}");
    }

    #[test]
    fn every_mistake_of_a_file_is_named_in_one_run() {
        let (_dir, path) = write(
            "[jobs]\nchunk_size = \"big\"\nrequest_attempts = -1\n[mqtt]\ncolour = 1\n[nonsense]\nx = 1\n",
        );
        let Err(ConfigError::Parse { message, .. }) = load(Some(&path), no_env, &[]) else {
            panic!("refused")
        };
        assert!(message.starts_with("4 mistakes:"), "{message}");
        for expected in [
            "line 2: jobs.chunk_size: the text \"big\", expected a whole number of 0 or more",
            "line 3: jobs.request_attempts: the number `-1`",
            "line 5: mqtt.colour: unknown field `colour`",
            "[nonsense] is not a section",
        ] {
            assert!(message.contains(expected), "{expected:?} in {message}");
        }
        assert!(!message.contains("u32"), "no Rust type names: {message}");
    }

    #[test]
    fn defaults_when_nothing_is_given() {
        let loaded = load(Some(Path::new("/nonexistent/rocky.toml")), no_env, &[]);
        assert!(matches!(loaded, Err(ConfigError::Read { .. })), "an explicit missing file is an error");
        let (_dir, path) = write("");
        let loaded = load(Some(&path), no_env, &[]).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.sources.values().all(|s| *s == Source::Default));
        assert_eq!(loaded.sources.len(), 59);
    }

    #[test]
    fn file_then_env_then_flags_override_each_other() {
        let (_dir, path) =
            write("[mqtt]\nurl = \"mqtt://127.0.0.1:2000\"\n[jobs]\nmax_active = 8\nchunk_size = 1024\n");
        let env = |var: &str| match var {
            "ROCKY_JOBS_MAX_ACTIVE" => Some("16".to_owned()),
            "ROCKY_JOBS_REQUEST_TIMEOUT_S" => Some("2.5".to_owned()),
            _ => None,
        };
        let flags = [("mqtt.url", "--broker", toml::Value::String("mqtt://127.0.0.1:3000".into()))];
        let loaded = load(Some(&path), env, &flags).unwrap();
        assert_eq!(loaded.config.mqtt.url, "mqtt://127.0.0.1:3000");
        assert_eq!(loaded.config.jobs.max_active, 16);
        assert_eq!(loaded.config.jobs.chunk_size, 1024);
        assert_eq!(loaded.config.jobs.request_timeout_s, 2.5);
        assert_eq!(loaded.sources["mqtt.url"], Source::Flag("--broker"));
        assert_eq!(loaded.sources["jobs.max_active"], Source::Env("ROCKY_JOBS_MAX_ACTIVE".into()));
        assert_eq!(loaded.sources["jobs.chunk_size"], Source::File { path: path.clone(), line: Some(5) });
        let text = loaded.render();
        assert!(text.contains("chunk_size = 1024"), "{text}");
        assert!(text.contains("line 5"), "{text}");
        assert!(text.contains("flag --broker"), "{text}");
        // Seconds as written: whole ones without ".0", others as they are.
        assert!(text.contains("done_timeout_s = 60 ") && text.contains("request_timeout_s = 2.5 "), "{text}");
        // What it prints reads back as the same settings.
        let (_again_dir, again) = write(&text);
        let reread = load(Some(&again), no_env, &[]).unwrap();
        assert_eq!(reread.config.jobs.done_timeout_s, loaded.config.jobs.done_timeout_s);
        assert_eq!(reread.config.jobs.request_timeout_s, 2.5);
    }

    #[test]
    fn a_bad_file_names_the_key_and_line() {
        let (_dir, path) = write("[jobs]\n\nmax_active = \"many\"\n");
        let err = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(err.contains("line 3") && err.contains("max_active"), "{err}");

        let (_dir, path) = write("[jobs]\nmax_activ = 3\n");
        let err = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(err.contains("max_activ") && err.contains("line 2"), "{err}");

        let (_dir, path) = write("[jobs]\nchunk_size = 10\n");
        let err = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(err.contains("jobs.chunk_size") && err.contains("line 2"), "{err}");

        let (_dir, path) = write("[mqtt\nurl=1");
        assert!(matches!(load(Some(&path), no_env, &[]), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn a_secret_in_the_file_is_refused_without_being_shown() {
        let (_dir, path) = write("[mqtt]\nurl = \"mqtt://h\"\npassword = \"hunter2\"\n");
        let err = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(err.contains("mqtt.password (line 3)") && err.contains("password_file"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let (_dir, path) = write("[http]\ntoken = \"abc\"\n");
        let err = load(Some(&path), no_env, &[]).unwrap_err().to_string();
        assert!(err.contains("http.token") && !err.contains("abc"), "{err}");
    }

    #[test]
    fn a_bad_environment_value_names_the_variable() {
        let (_dir, path) = write("");
        let env = |var: &str| (var == "ROCKY_JOBS_CHUNK_SIZE").then(|| "big".to_owned());
        let err = load(Some(&path), env, &[]).unwrap_err().to_string();
        assert!(err.contains("ROCKY_JOBS_CHUNK_SIZE"), "{err}");
        let env = |var: &str| (var == "ROCKY_MQTT_URL").then(|| "http://x".to_owned());
        let err = load(Some(&path), env, &[]).unwrap_err().to_string();
        assert!(err.contains("mqtt.url") && err.contains("ROCKY_MQTT_URL"), "{err}");
    }
}
