//! Patches (the delta extension of `PROTOCOL.md`): a device that lists `delta-bsdiff4` and runs
//! an image Rocky holds is sent a BSDIFF40 patch from that image to the job's, when the patch is
//! at most `firmware.delta_max_share` of the image.
//!
//! Patches are built with qbsdiff (a maintained bsdiff 4.x implementation whose patches the
//! `bsdiff4` format readers apply) on a blocking thread, one pair at a time by default, each
//! within a time budget, and only for images up to `firmware.delta_max_image_bytes` (building
//! holds a suffix array of the base: about 9 bytes per base byte, plus both images). Each
//! (base, target) pair is built once: concurrent asks wait for the one build, and the result (a
//! patch, or why the image goes whole) is kept in memory and the patch as a file beside the
//! stored images, so a rollout of thousands of devices on one base builds one patch.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Image;
use crate::protocol::{Sha256, sha256_hex};

/// `[firmware]`'s delta settings.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaPolicy {
    /// `firmware.delta = "auto"`: patches where they help; `"off"`: never.
    pub enabled: bool,
    /// A patch is sent when it is at most this share of the image.
    pub max_share: f64,
    /// Neither image of a pair may be larger than this (building's memory grows with the base).
    pub max_image_bytes: u64,
    /// The longest one build may take; past it the image goes whole.
    pub build_timeout: Duration,
    /// Builds at once.
    pub builds: usize,
    /// How long making a job waits for its pair's patch (the build goes on either way).
    pub wait: Duration,
}

impl Default for DeltaPolicy {
    fn default() -> Self {
        Self {
            enabled: true,
            max_share: 0.5,
            max_image_bytes: 64 * 1024 * 1024,
            build_timeout: Duration::from_secs(300),
            builds: 1,
            wait: Duration::from_secs(5),
        }
    }
}

/// A patch from `base` to `target`: its bytes are an [`Image`] (named `<target>.bsdiff`), so the
/// engine chunks, resumes and paces it like any image.
#[derive(Debug, Clone, PartialEq)]
pub struct Patch {
    pub base: Sha256,
    pub target: Sha256,
    pub bytes: Image,
}

/// What job JSON and the console show of a patch: `{"base_sha256", "patch_size",
/// "patch_sha256"}`. Plain values, cheap to copy into every view of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaInfo {
    pub base: Sha256,
    pub patch_size: u64,
    pub patch_sha256: Sha256,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct DeltaJson {
    base_sha256: String,
    patch_size: u64,
    patch_sha256: String,
}

impl serde::Serialize for DeltaInfo {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        DeltaJson {
            base_sha256: sha256_hex(&self.base),
            patch_size: self.patch_size,
            patch_sha256: sha256_hex(&self.patch_sha256),
        }
        .serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for DeltaInfo {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let json = DeltaJson::deserialize(deserializer)?;
        let hash = |text: &str| super::parse_sha256(text).map_err(serde::de::Error::custom);
        Ok(Self {
            base: hash(&json.base_sha256)?,
            patch_size: json.patch_size,
            patch_sha256: hash(&json.patch_sha256)?,
        })
    }
}

impl Patch {
    pub fn info(&self) -> DeltaInfo {
        DeltaInfo { base: self.base, patch_size: self.size(), patch_sha256: *self.sha256() }
    }

    /// The fifth item of the FOTA_REQUEST that offers it.
    pub fn item(&self) -> crate::protocol::DeltaItem {
        crate::protocol::DeltaItem { base: self.base, size: self.size(), sha256: *self.sha256() }
    }

    pub fn size(&self) -> u64 {
        self.bytes.size()
    }

    pub fn sha256(&self) -> &Sha256 {
        self.bytes.sha256()
    }
}

/// What a job for a device that speaks deltas is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Choice {
    Patch(Patch),
    /// The whole image, and why (said on the job's timeline).
    Whole(String),
}

/// A pair's one build: its outcome once known; whether it was started; whether an ask already
/// stopped waiting for it (later asks then do not wait either: one slow build must not hold up
/// every job of a rollout pass).
#[derive(Default)]
struct Pair {
    outcome: std::sync::OnceLock<Choice>,
    started: std::sync::atomic::AtomicBool,
    waited_out: std::sync::atomic::AtomicBool,
}

/// Pairs remembered in memory (patches and refusals); past it, or past
/// [`MAX_REMEMBERED_BYTES`] of patches, those already decided are forgotten (and read back from
/// their files, or built again, when asked for). Jobs hold their own patch while they run.
const MAX_REMEMBERED: usize = 1024;

/// Patch bytes remembered in memory.
const MAX_REMEMBERED_BYTES: u64 = 128 * 1024 * 1024;

/// Patches between images, built once a pair and kept. Cheap to share: the builds run in tasks
/// of their own, which finish and keep their patch even when whoever asked has stopped waiting.
pub struct Deltas {
    shared: Arc<Shared>,
}

struct Shared {
    policy: DeltaPolicy,
    builds: Arc<tokio::sync::Semaphore>,
    pairs: Mutex<HashMap<(Sha256, Sha256), Arc<Pair>>>,
    dir: Mutex<Option<PathBuf>>,
    /// Build times, for `/metrics`.
    stats: Mutex<BuildStats>,
    /// Woken whenever a build ends.
    ended: tokio::sync::Notify,
}

/// Patch builds so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct BuildStats {
    pub built: u64,
    pub failed: u64,
    pub seconds: f64,
}

impl Default for Deltas {
    fn default() -> Self {
        Self::new(DeltaPolicy::default())
    }
}

impl Deltas {
    pub fn new(policy: DeltaPolicy) -> Self {
        let builds = Arc::new(tokio::sync::Semaphore::new(policy.builds.max(1)));
        let shared = Shared {
            policy,
            builds,
            pairs: Mutex::default(),
            dir: Mutex::default(),
            stats: Mutex::default(),
            ended: tokio::sync::Notify::new(),
        };
        Self { shared: Arc::new(shared) }
    }

    pub fn policy(&self) -> &DeltaPolicy {
        &self.shared.policy
    }

    /// Patches are kept as files in `dir` from now on.
    pub fn keep_in(&self, dir: PathBuf) {
        *self.shared.dir.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir);
    }

    pub fn stats(&self) -> BuildStats {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn path(dir: &std::path::Path, base: &Sha256, target: &Sha256) -> PathBuf {
        dir.join(format!("{}-{}.bsdiff", sha256_hex(base), sha256_hex(target)))
    }

    /// A patch kept earlier for this pair, read back from its file.
    pub fn stored(&self, base: &Sha256, target: &Sha256) -> Option<Patch> {
        self.shared.stored(base, target)
    }

    /// What jobs of this pair would be sent, when that is known without building anything: the
    /// outcome remembered, or a patch kept on disk (judged by its share): `Ok(patch size)`, or
    /// why the image goes whole. `None`: not built.
    pub fn decided(&self, base: &Sha256, target: &Image) -> Option<Result<u64, String>> {
        let pair = self
            .shared
            .pairs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(*base, *target.sha256()))
            .cloned();
        if let Some(choice) = pair.and_then(|pair| pair.outcome.get().cloned()) {
            return Some(match choice {
                Choice::Patch(patch) => Ok(patch.size()),
                Choice::Whole(why) => Err(why),
            });
        }
        // The kept file's size is all a share needs: reading and hashing a patch of tens of MiB
        // would hold up the async worker (a dry run asks this of every base).
        let dir = self.shared.dir.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        let size = std::fs::metadata(Deltas::path(&dir, base, target.sha256())).ok()?.len();
        Some(self.shared.judge_size(size, target).map(|()| size))
    }

    /// The patch from `base` to `target`, or why the image goes whole. The pair is built once,
    /// in a task of its own; this waits for it at most `policy.wait` (and not at all once an ask
    /// for the pair has waited that long in vain): the job then goes whole, and later jobs get
    /// the patch when the build is done.
    pub async fn choose(&self, base: &Image, target: &Image) -> Choice {
        let policy = &self.shared.policy;
        if !policy.enabled {
            return Choice::Whole("firmware.delta is off".into());
        }
        if base.sha256() == target.sha256() {
            return Choice::Whole("the device runs this image already".into());
        }
        let limit = policy.max_image_bytes;
        if base.size() > limit || target.size() > limit {
            return Choice::Whole(format!(
                "an image over firmware.delta_max_image_bytes ({limit} bytes) is not diffed"
            ));
        }
        let pair = {
            let mut pairs = self.shared.pairs.lock().unwrap_or_else(|p| p.into_inner());
            let key = (*base.sha256(), *target.sha256());
            if !pairs.contains_key(&key) && over_bounds(&pairs) {
                pairs.retain(|_, pair| pair.outcome.get().is_none());
            }
            pairs.entry(key).or_default().clone()
        };
        if let Some(choice) = pair.outcome.get() {
            return choice.clone();
        }
        if !pair.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let (shared, pair, base, target) =
                (self.shared.clone(), pair.clone(), base.clone(), target.clone());
            tokio::spawn(async move {
                let choice = shared.build(base, target).await;
                let _ = pair.outcome.set(choice);
                shared.ended.notify_waiters();
            });
        }
        let deadline = tokio::time::Instant::now() + policy.wait;
        loop {
            let ended = self.shared.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if let Some(choice) = pair.outcome.get() {
                return choice.clone();
            }
            let gave_up = pair.waited_out.load(std::sync::atomic::Ordering::SeqCst);
            if gave_up || tokio::time::timeout_at(deadline, ended).await.is_err() {
                pair.waited_out.store(true, std::sync::atomic::Ordering::SeqCst);
                return Choice::Whole(format!(
                    "the patch from {} is still being built: sent whole (later jobs get it)",
                    crate::protocol::short_hash(base.sha256())
                ));
            }
        }
    }
}

/// Whether the pairs remembered are too many, or their patches too large, to take another.
fn over_bounds(pairs: &HashMap<(Sha256, Sha256), Arc<Pair>>) -> bool {
    let bytes: u64 = pairs
        .values()
        .filter_map(|pair| match pair.outcome.get() {
            Some(Choice::Patch(patch)) => Some(patch.size()),
            _ => None,
        })
        .sum();
    pairs.len() >= MAX_REMEMBERED || bytes >= MAX_REMEMBERED_BYTES
}

impl Shared {
    fn stored(&self, base: &Sha256, target: &Sha256) -> Option<Patch> {
        let dir = self.dir.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        let bytes = std::fs::read(Deltas::path(&dir, base, target)).ok()?;
        let bytes = Image::new(format!("{}.bsdiff", sha256_hex(target)), bytes.into());
        Some(Patch { base: *base, target: *target, bytes })
    }

    async fn build(&self, base: Image, target: Image) -> Choice {
        // A patch kept on disk is used once it is checked: applied to the base it must give
        // the target (a damaged or replaced file is built again).
        let (shared_base, shared_target) = (base.clone(), target.clone());
        let dir = self.dir.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let kept = tokio::task::spawn_blocking(move || {
            let dir = dir?;
            let bytes =
                std::fs::read(Deltas::path(&dir, shared_base.sha256(), shared_target.sha256())).ok()?;
            let made = apply_patch(shared_base.bytes(), &bytes, shared_target.size()).ok()?;
            // Hashed here too: a patch may be tens of MiB, too long for an async worker.
            (made.as_slice() == shared_target.bytes().as_ref())
                .then(|| patch_image(shared_target.sha256(), bytes))
        })
        .await
        .ok()
        .flatten();
        let choice = match kept {
            Some(bytes) => Choice::Patch(Patch { base: *base.sha256(), target: *target.sha256(), bytes }),
            None => self.build_now(&base, &target).await,
        };
        match choice {
            Choice::Patch(patch) => self.judge(patch, &target),
            whole => whole,
        }
    }

    /// A patch that saves too little is not worth a device's patching.
    fn judge(&self, patch: Patch, target: &Image) -> Choice {
        match self.judge_size(patch.size(), target) {
            Ok(()) => Choice::Patch(patch),
            Err(why) => Choice::Whole(why),
        }
    }

    /// [`Shared::judge`] by the patch's size alone.
    fn judge_size(&self, size: u64, target: &Image) -> Result<(), String> {
        let share = size as f64 / target.size().max(1) as f64;
        if share <= self.policy.max_share {
            Ok(())
        } else {
            Err(format!(
                "the patch is {:.0}% of the image (firmware.delta_max_share is {:.0}%): sent whole",
                share * 100.0,
                self.policy.max_share * 100.0
            ))
        }
    }

    async fn build_now(&self, base: &Image, target: &Image) -> Choice {
        let Ok(permit) = self.builds.clone().acquire_owned().await else {
            return Choice::Whole("patch building has stopped".into());
        };
        let started = Instant::now();
        let (source, wanted) = (base.bytes().clone(), target.bytes().clone());
        let target_hash = *target.sha256();
        let kept_at = self
            .dir
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|dir| Deltas::path(dir, base.sha256(), target.sha256()));
        // The permit goes with the thread: a build that outlives its budget still counts
        // against the concurrent builds until it ends (and is still kept for the next ask).
        // Hashing and keeping the patch happen there as well: tens of MiB hashed and synced to
        // disk would hold up the async worker, and with it every job.
        let thread = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let patch = patch_image(&target_hash, build_patch(&source, &wanted)?);
            if let Some(path) = kept_at {
                keep(&path, &patch);
            }
            Ok::<_, std::io::Error>(patch)
        });
        let built = tokio::time::timeout(self.policy.build_timeout, thread).await;
        let seconds = started.elapsed().as_secs_f64();
        let result = match built {
            Err(_) => Err(format!(
                "building the patch took longer than firmware.delta_build_timeout_s ({} s): sent whole",
                self.policy.build_timeout.as_secs()
            )),
            Ok(Err(_)) => Err("building the patch failed: sent whole".to_owned()),
            Ok(Ok(Err(e))) => Err(format!("building the patch failed ({e}): sent whole")),
            Ok(Ok(Ok(patch))) => Ok(patch),
        };
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        stats.seconds += seconds;
        match result {
            Ok(bytes) => {
                stats.built += 1;
                Choice::Patch(Patch { base: *base.sha256(), target: *target.sha256(), bytes })
            }
            Err(why) => {
                stats.failed += 1;
                Choice::Whole(why)
            }
        }
    }
}

/// A patch's bytes as the image its jobs send (named after the target; hashing it is the cost).
fn patch_image(target: &Sha256, bytes: Vec<u8>) -> Image {
    Image::new(format!("{}.bsdiff", sha256_hex(target)), bytes.into())
}

/// Writes the patch beside the stored images (best effort: without the file it is built again
/// after a restart). Blocking: call it off the async workers.
fn keep(path: &std::path::Path, patch: &Image) {
    if let Err(error) = super::write_atomically(path, patch.bytes()) {
        tracing::warn!(%error, path = %path.display(), "a patch could not be kept");
    }
}

/// A BSDIFF40 patch from `base` to `target`, on this thread (one core: no parallel search).
pub fn build_patch(base: &[u8], target: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut patch = Vec::new();
    qbsdiff::Bsdiff::new(base, target)
        .parallel_scheme(qbsdiff::ParallelScheme::Never)
        .compare(std::io::Cursor::new(&mut patch))?;
    Ok(patch)
}

/// Applies a BSDIFF40 patch to `base`, refusing one whose result would be over `max_target`
/// bytes; what a simulated device does with a patch. The header is checked here first (qbsdiff
/// trusts it), and a malformed body is an error, never a panic.
pub fn apply_patch(base: &[u8], patch: &[u8], max_target: u64) -> Result<Vec<u8>, String> {
    let size = check_header(patch)?;
    if size > max_target {
        return Err(format!("the patch makes {size} bytes, over {max_target}"));
    }
    let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let patcher = qbsdiff::Bspatch::new(patch).map_err(|e| format!("not a BSDIFF40 patch: {e}"))?;
        // qbsdiff writes what the control blocks say, whatever the header said: the output is
        // cut off at the header's size (a forged patch cannot make it grow without end).
        let mut target = Bounded { out: Vec::with_capacity(usize::try_from(size).unwrap_or(0)), max: size };
        patcher.apply(base, &mut target).map_err(|e| format!("the patch does not apply: {e}"))?;
        if target.out.len() as u64 != size {
            return Err(format!("the patch makes {} bytes, its header says {size}", target.out.len()));
        }
        Ok(target.out)
    }));
    applied.unwrap_or_else(|_| Err("the patch does not apply (malformed)".into()))
}

/// A writer that refuses to grow past `max` bytes.
struct Bounded {
    out: Vec<u8>,
    max: u64,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.out.len() as u64 + buf.len() as u64 > self.max {
            return Err(std::io::Error::other("it makes more bytes than its header says"));
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// BSDIFF40's header: the magic, then the compressed control and diff blocks' lengths and the
/// new file's size, each 8 bytes little-endian with the sign in the top bit. Answers the size.
fn check_header(patch: &[u8]) -> Result<u64, String> {
    if patch.len() < 32 || &patch[..8] != b"BSDIFF40" {
        return Err("not a BSDIFF40 patch (no header)".into());
    }
    let number = |at: usize| -> Result<u64, String> {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&patch[at..at + 8]);
        if raw[7] & 0x80 != 0 {
            return Err("a negative length in the header".into());
        }
        Ok(u64::from_le_bytes(raw))
    };
    let (control, diff, size) = (number(8)?, number(16)?, number(24)?);
    let body = patch.len() as u64 - 32;
    if control.checked_add(diff).is_none_or(|blocks| blocks > body) {
        return Err("the header's block lengths run past the patch".into());
    }
    Ok(size)
}

/// What a job for a device is sent, where the delta extension applies: `None` for a device
/// that does not speak `delta-bsdiff4` (or reported no image, or deltas are off), else the patch
/// from the image it runs, or why the image goes whole.
pub async fn delta_for(
    library: &super::Library,
    running: Option<&Sha256>,
    speaks_delta: bool,
    target: &Image,
) -> Option<Choice> {
    let running = running.filter(|_| speaks_delta && library.deltas().policy().enabled)?;
    if running == target.sha256() {
        return None;
    }
    match library.find(running).await {
        Ok(Some(base)) => Some(library.deltas().choose(&base, target).await),
        Ok(None) => Some(Choice::Whole(format!(
            "Rocky does not hold the image the device runs ({}): sent whole",
            crate::protocol::short_hash(running)
        ))),
        Err(e) => {
            Some(Choice::Whole(format!("the image the device runs could not be read ({e}): sent whole")))
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn firmware(len: usize, seed: u64) -> Vec<u8> {
        crate::sim::sample_image(len, seed).to_vec()
    }

    #[test]
    fn a_patch_rebuilds_the_target_and_a_malformed_one_is_refused_in_words() {
        let base = firmware(64 * 1024, 1);
        let mut target = base.clone();
        target[1000..1100].fill(7);
        target.extend_from_slice(b"appended");
        let patch = build_patch(&base, &target).unwrap();
        assert!(patch.starts_with(b"BSDIFF40"));
        assert_eq!(apply_patch(&base, &patch, 1 << 20).unwrap(), target);
        assert!(apply_patch(&base, &patch, 100).unwrap_err().contains("over 100"));
        assert!(apply_patch(&base, b"BSDIFF40garbage", 1 << 20).is_err());
        // A header that claims fewer bytes than the blocks make: the output stops there.
        let mut short = patch.clone();
        short[24..32].copy_from_slice(&100u64.to_le_bytes());
        let error = apply_patch(&base, &short, 1 << 20).unwrap_err();
        assert!(error.contains("more bytes than its header says"), "{error}");
        let mut damaged = patch.clone();
        let middle = damaged.len() / 2;
        damaged[middle] ^= 0xff;
        assert!(
            apply_patch(&base, &damaged, 1 << 20).is_err()
                || apply_patch(&base, &damaged, 1 << 20).unwrap() != target
        );
    }

    #[test]
    fn every_damaged_byte_of_the_vector_patch_is_an_error_or_other_bytes_never_a_panic() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/integration/data/protocol_vectors.json")).unwrap();
        let patch =
            hex::decode(vectors["extensions"]["delta"]["patch_bsdiff4_hex"].as_str().unwrap()).unwrap();
        let base: Vec<u8> = (0..16).flat_map(|_| 0..=255u8).collect();
        let target = apply_patch(&base, &patch, 1 << 20).unwrap();
        assert_eq!(
            hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&target)),
            vectors["extensions"]["delta"]["target_sha256"].as_str().unwrap()
        );
        for at in 0..patch.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut damaged = patch.clone();
                damaged[at] ^= flip;
                let _ = apply_patch(&base, &damaged, 1 << 20);
            }
            let _ = apply_patch(&base, &patch[..at], 1 << 20);
        }
    }

    #[tokio::test]
    async fn each_pair_is_built_once_and_a_patch_that_saves_too_little_sends_the_image_whole() {
        let dir = tempfile::tempdir().unwrap();
        let deltas = Deltas::new(DeltaPolicy { max_share: 0.5, ..DeltaPolicy::default() });
        deltas.keep_in(dir.path().to_path_buf());
        let base = Image::new("base", Bytes::from(firmware(32 * 1024, 2)));
        let mut near = base.bytes().to_vec();
        near[10] ^= 1;
        let near = Image::new("near", Bytes::from(near));
        let (first, second) = tokio::join!(deltas.choose(&base, &near), deltas.choose(&base, &near));
        let (Choice::Patch(a), Choice::Patch(b)) = (first, second) else { panic!("a patch") };
        assert_eq!(a, b);
        assert_eq!(deltas.stats().built, 1, "two asks, one build");
        assert!(Deltas::path(dir.path(), base.sha256(), near.sha256()).is_file());
        // Kept on disk: another Rocky (or this one after a restart) reads it back.
        let again = Deltas::default();
        again.keep_in(dir.path().to_path_buf());
        assert_eq!(again.stored(base.sha256(), near.sha256()).map(|p| p.size()), Some(a.size()));
        // A dry run's answer from the kept file alone (its size, judged by the share), and the
        // remembered outcome where there is one.
        assert_eq!(again.decided(base.sha256(), &near), Some(Ok(a.size())));
        assert_eq!(deltas.decided(base.sha256(), &near), Some(Ok(a.size())));
        let strict = Deltas::new(DeltaPolicy { max_share: 0.0, ..DeltaPolicy::default() });
        strict.keep_in(dir.path().to_path_buf());
        let why = strict.decided(base.sha256(), &near).unwrap().unwrap_err();
        assert!(why.contains("firmware.delta_max_share is 0%"), "{why}");
        assert_eq!(strict.decided(near.sha256(), &base), None, "nothing kept the other way");
        // Unrelated content: the patch is about as big as the image.
        let unrelated = Image::new("other", Bytes::from(firmware(32 * 1024, 3)));
        let Choice::Whole(why) = deltas.choose(&base, &unrelated).await else { panic!("whole") };
        assert!(why.contains("firmware.delta_max_share is 50%"), "{why}");
        let off = Deltas::new(DeltaPolicy { enabled: false, ..DeltaPolicy::default() });
        assert_eq!(off.choose(&base, &near).await, Choice::Whole("firmware.delta is off".into()));
        let small = Deltas::new(DeltaPolicy { max_image_bytes: 1024, ..DeltaPolicy::default() });
        let Choice::Whole(why) = small.choose(&base, &near).await else { panic!("whole") };
        assert!(why.contains("delta_max_image_bytes"), "{why}");
    }

    #[test]
    fn remembered_pairs_are_bounded_by_count_and_by_the_bytes_of_their_patches() {
        let decided = |size: usize| {
            let pair = Pair::default();
            let bytes = Image::new("p", Bytes::from(vec![0u8; size]));
            let _ = pair.outcome.set(Choice::Patch(Patch { base: [0; 32], target: [1; 32], bytes }));
            Arc::new(pair)
        };
        let mut pairs = HashMap::new();
        pairs.insert(([0; 32], [1; 32]), decided(1024));
        assert!(!over_bounds(&pairs));
        pairs.insert(([0; 32], [2; 32]), decided(MAX_REMEMBERED_BYTES as usize));
        assert!(over_bounds(&pairs), "128 MiB of patches");
        let mut pairs = HashMap::new();
        for n in 0..MAX_REMEMBERED {
            let mut target = [0u8; 32];
            target[..8].copy_from_slice(&(n as u64).to_le_bytes());
            pairs.insert(([1; 32], target), decided(1));
        }
        assert!(over_bounds(&pairs), "{} pairs", pairs.len());
    }
}
