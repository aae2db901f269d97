//! The audit trail: who changed what, when, and how it went. Every state-changing action an
//! operator takes (through the API, the CLI, which calls the API, or the console in-process)
//! is written here by the service (`service/`) once it is decided and before its answer, with
//! the caller's name as the actor: a token's name, or `console:<user>@<host>`. A write a role
//! does not cover is written too, refused, by the API's token check.
//!
//! Entries live in the job store (both backends, shared by every instance on PostgreSQL) and
//! are kept like jobs: `store.keep_days` ages them out, and at most `store.keep_audit` stay
//! (the oldest go first), so no caller can fill the disk through them. A Rocky without a store
//! keeps the newest [`MEMORY_ENTRIES`] in memory.

mod memory;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

pub use memory::MEMORY_ENTRIES;

/// The longest actor, action, target or outcome kept, in bytes; longer text is cut at a
/// character boundary with "…" (an error message can quote a long request).
pub const MAX_FIELD_BYTES: usize = 512;
/// The most entries one `GET /audit` page holds, and how many it holds unasked.
pub const MAX_PAGE: usize = 1000;
pub const DEFAULT_PAGE: usize = 100;
/// The most entries kept unless `store.keep_audit` says otherwise.
pub const DEFAULT_KEEP: u64 = 1_000_000;

/// One action as stored: `id` orders entries (and is the page cursor).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: i64,
    /// When it was decided, Unix milliseconds.
    pub at: i64,
    pub actor: String,
    /// What was done: `rollout.create`, `job.cancel`, … (see [`Action`]).
    pub action: String,
    /// What it was done to: `rollout:3`, `job:12`, `device:dev-1`, `firmware:<sha256>`.
    pub target: String,
    /// `ok`, or `refused: <why>` / `failed: <why>`.
    pub outcome: String,
}

/// An entry before the store numbers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
}

impl NewEntry {
    /// Every field cut to [`MAX_FIELD_BYTES`].
    pub fn new(at: i64, actor: &str, action: Action, target: &str, outcome: &str) -> Self {
        Self {
            at,
            actor: cut(actor),
            action: action.as_str().to_owned(),
            target: cut(target),
            outcome: cut(&hide_url_paths(outcome)),
        }
    }

    pub fn numbered(self, id: i64) -> Entry {
        let Self { at, actor, action, target, outcome } = self;
        Entry { id, at, actor, action, target, outcome }
    }
}

/// `text` with every http(s) URL cut to its scheme and host (`https://bucket.example/…`): an
/// error may quote a firmware URL whose path or query holds a token, and every viewer reads the
/// trail.
fn hide_url_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = ["http://", "https://"].iter().filter_map(|s| rest.find(s)).min() {
        let scheme_end = at + rest[at..].find("://").map_or(0, |i| i + 3);
        out.push_str(&rest[..scheme_end]);
        let url = &rest[scheme_end..];
        let end =
            url.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | ')' | '>')).unwrap_or(url.len());
        let host_end = url[..end].find(['/', '?', '#']).unwrap_or(end);
        out.push_str(&url[..host_end]);
        if host_end < end {
            out.push_str("/…");
        }
        rest = &url[end..];
    }
    out.push_str(rest);
    out
}

/// `text` fit to print anywhere: control and other unprintable characters (an error may quote
/// what a caller sent) become `?`, and at most [`MAX_FIELD_BYTES`] are kept.
fn cut(text: &str) -> String {
    let text: String = text.chars().map(|c| if crate::text::is_unprintable(c) { '?' } else { c }).collect();
    if text.len() <= MAX_FIELD_BYTES {
        return text;
    }
    format!("{}…", crate::text::prefix_within(&text, MAX_FIELD_BYTES - '…'.len_utf8()))
}

/// Which entries to read: all filters are optional and combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Only entries at or after this time (Unix ms).
    pub since: Option<i64>,
    pub actor: Option<String>,
    pub target: Option<String>,
    /// The cursor: only entries with a larger id.
    pub after: Option<i64>,
    /// Only entries with a smaller id (the cursor of a newest-first page).
    pub before: Option<i64>,
    /// The newest first (the console's view, `order=newest`), instead of the oldest.
    pub newest_first: bool,
    pub limit: usize,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            since: None,
            actor: None,
            target: None,
            after: None,
            before: None,
            newest_first: false,
            limit: DEFAULT_PAGE,
        }
    }
}

impl Query {
    pub fn matches(&self, entry: &Entry) -> bool {
        self.since.is_none_or(|since| entry.at >= since)
            && self.actor.as_ref().is_none_or(|actor| &entry.actor == actor)
            && self.target.as_ref().is_none_or(|target| &entry.target == target)
            && self.after.is_none_or(|after| entry.id > after)
            && self.before.is_none_or(|before| entry.id < before)
    }
}

/// `GET /audit`: one page, oldest first, and the cursor of the next (`null` on the last); a
/// newest-first page has `next_before` instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub entries: Vec<Entry>,
    #[serde(default)]
    pub next_after: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

impl Page {
    /// A page from up to `limit + 1` entries read in `query`'s order: the extra one only says
    /// there are more.
    pub fn from_read(mut entries: Vec<Entry>, query: &Query, limit: usize) -> Self {
        let more = entries.len() > limit;
        entries.truncate(limit);
        let cursor = if more { entries.last().map(|e| e.id) } else { None };
        if query.newest_first {
            Self { entries, next_after: None, next_before: cursor }
        } else {
            Self { entries, next_after: cursor, next_before: None }
        }
    }
}

/// The actions written, one word each for filters and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    JobCreate,
    JobCancel,
    JobRetry,
    DeviceRegister,
    DeviceForget,
    DeviceImport,
    RolloutCreate,
    RolloutPause,
    RolloutResume,
    RolloutCancel,
    FirmwareUpload,
    FirmwareManifest,
    FirmwareAwsSignature,
    /// A write the caller's role does not cover, refused before it was looked at.
    Forbidden,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JobCreate => "job.create",
            Self::JobCancel => "job.cancel",
            Self::JobRetry => "job.retry",
            Self::DeviceRegister => "device.register",
            Self::DeviceForget => "device.forget",
            Self::DeviceImport => "device.import",
            Self::RolloutCreate => "rollout.create",
            Self::RolloutPause => "rollout.pause",
            Self::RolloutResume => "rollout.resume",
            Self::RolloutCancel => "rollout.cancel",
            Self::FirmwareUpload => "firmware.upload",
            Self::FirmwareManifest => "firmware.manifest",
            Self::FirmwareAwsSignature => "firmware.aws_signature",
            Self::Forbidden => "forbidden",
        }
    }
}

/// Where entries go: the job store, or memory when this Rocky keeps no store.
#[derive(Clone)]
enum Sink {
    Stored(crate::store::Store),
    Memory(memory::Ring),
}

/// A refused write is written at most once a [`REFUSALS_EVERY_MS`] per actor; the ones between
/// are counted into the next, so a token's flood of refused writes cannot push real entries
/// out of the trail or hold up the store.
pub const REFUSALS_EVERY_MS: i64 = 60_000;
/// Actors whose refusals are being counted; past it the counts start over.
const REFUSERS_KEPT: usize = 4096;

/// The audit trail: where entries are written and read.
#[derive(Clone)]
pub struct AuditLog {
    sink: Sink,
    /// Per actor: when its last refusal was written, and how many came since.
    refusals: Arc<Mutex<HashMap<String, (i64, u64)>>>,
}

impl AuditLog {
    pub fn stored(store: crate::store::Store) -> Self {
        Self { sink: Sink::Stored(store), refusals: Arc::default() }
    }

    pub fn in_memory() -> Self {
        Self { sink: Sink::Memory(memory::Ring::default()), refusals: Arc::default() }
    }

    /// Writes `entry` and waits until it is committed. The write is a task of its own, so an
    /// action whose caller hangs up meanwhile is still written. A failure is said in the log
    /// (and the action's answer still goes out: what was done is done).
    pub async fn record(&self, entry: NewEntry) {
        match &self.sink {
            Sink::Stored(store) => {
                let (store, shown) = (store.clone(), entry.clone());
                let written = tokio::spawn(async move { store.audit(entry).await }).await;
                let error = match written {
                    Ok(Ok(())) => return,
                    Ok(Err(error)) => error.to_string(),
                    Err(error) => error.to_string(),
                };
                tracing::error!(%error, action = %shown.action, target = %shown.target, actor = %shown.actor,
                    "an audit entry could not be stored");
            }
            Sink::Memory(ring) => ring.push(entry),
        }
    }

    /// Writes a refused write (`forbidden`), unless this actor's last one was written less
    /// than [`REFUSALS_EVERY_MS`] before: then it is only counted, and the next one written
    /// says how many were not.
    pub async fn record_refusal(&self, mut entry: NewEntry) {
        let skipped = {
            let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
            if refusals.len() >= REFUSERS_KEPT && !refusals.contains_key(&entry.actor) {
                refusals.clear();
            }
            let (last, skipped) = refusals.entry(entry.actor.clone()).or_insert((i64::MIN, 0));
            if entry.at.saturating_sub(*last) < REFUSALS_EVERY_MS {
                *skipped += 1;
                return;
            }
            *last = entry.at;
            std::mem::take(skipped)
        };
        if skipped > 0 {
            entry.outcome = cut(&format!(
                "{} ({skipped} more refused since this actor's last entry, not written one by one)",
                entry.outcome
            ));
        }
        self.record(entry).await;
    }

    /// Removes entries older than `before` (Unix ms); memory keeps its count bound only.
    pub async fn prune(&self, before: i64) {
        if let Sink::Stored(store) = &self.sink {
            store.prune_audit(before).await;
        }
    }

    /// The entries `query` matches, oldest first, one page.
    pub async fn read(&self, query: &Query) -> Result<Page, String> {
        let limit = query.limit.clamp(1, MAX_PAGE);
        let wanted = Query { limit: limit + 1, ..query.clone() };
        let entries = match &self.sink {
            Sink::Stored(store) => store.read_audit(wanted).await.map_err(|e| e.to_string())?,
            Sink::Memory(ring) => ring.read(&wanted),
        };
        Ok(Page::from_read(entries, query, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_fields_are_cut_at_a_character_boundary() {
        let long = "é".repeat(400);
        let entry = NewEntry::new(1, &long, Action::JobCreate, "job:1", &long);
        assert!(entry.actor.len() <= MAX_FIELD_BYTES);
        assert!(entry.actor.ends_with('…'));
        assert_eq!(entry.target, "job:1");
        let entry = NewEntry::new(1, "a", Action::JobCreate, "device:\u{1b}[2J", "refused: \r\n");
        assert_eq!(entry.target, "device:?[2J");
        assert_eq!(entry.outcome, "refused: ??");
    }

    #[test]
    fn urls_in_an_outcome_keep_only_their_host() {
        let said = "refused: fetching https://bucket.example:8443/fw.bin?X-Amz-Signature=abc answered 403; \
                    see \"http://h/x\" or http://plain";
        let entry = NewEntry::new(1, "ci", Action::JobCreate, "device:d", said);
        assert_eq!(
            entry.outcome,
            "refused: fetching https://bucket.example:8443/… answered 403; see \"http://h/…\" or http://plain"
        );
    }

    #[test]
    fn a_page_says_whether_more_follow() {
        let entries: Vec<Entry> =
            (1..=3).map(|id| NewEntry::new(id, "a", Action::JobCancel, "job:1", "ok").numbered(id)).collect();
        let page = Page::from_read(entries.clone(), &Query::default(), 2);
        assert_eq!(page.entries.len(), 2);
        assert_eq!(page.next_after, Some(2));
        let page = Page::from_read(entries.clone(), &Query::default(), 3);
        assert_eq!(page.next_after, None);
        let newest = Query { newest_first: true, ..Query::default() };
        let reversed: Vec<Entry> = entries.into_iter().rev().collect();
        let page = Page::from_read(reversed, &newest, 2);
        assert_eq!((page.next_after, page.next_before), (None, Some(2)));
    }

    #[tokio::test]
    async fn refusals_are_written_once_a_minute_per_actor_and_the_rest_counted() {
        let log = AuditLog::in_memory();
        let refused =
            |at: i64, actor: &str| NewEntry::new(at, actor, Action::Forbidden, "POST /jobs", "refused: no");
        for at in (0..10).map(|n| n * 1_000) {
            log.record_refusal(refused(at, "watch")).await;
        }
        log.record_refusal(refused(5_000, "other")).await;
        log.record_refusal(refused(REFUSALS_EVERY_MS, "watch")).await;
        let all = log.read(&Query { limit: MAX_PAGE, ..Query::default() }).await.unwrap().entries;
        let shown: Vec<(&str, &str)> = all.iter().map(|e| (e.actor.as_str(), e.outcome.as_str())).collect();
        assert_eq!(
            shown,
            [
                ("watch", "refused: no"),
                ("other", "refused: no"),
                (
                    "watch",
                    "refused: no (9 more refused since this actor's last entry, not written one by one)"
                ),
            ]
        );
    }

    #[test]
    fn filters_combine() {
        let entry = NewEntry::new(1000, "ci", Action::RolloutPause, "rollout:3", "ok").numbered(7);
        let query = |q: Query| q.matches(&entry);
        assert!(query(Query::default()));
        assert!(query(Query { since: Some(1000), actor: Some("ci".into()), ..Query::default() }));
        assert!(!query(Query { since: Some(1001), ..Query::default() }));
        assert!(!query(Query { target: Some("rollout:4".into()), ..Query::default() }));
        assert!(!query(Query { after: Some(7), ..Query::default() }));
        assert!(!query(Query { before: Some(7), ..Query::default() }));
        assert!(query(Query { before: Some(8), ..Query::default() }));
    }
}
