//! The traffic pane's history: a bounded ring of lines, with a transfer's chunks folded into one
//! line per job (`data → dev-07 chunks 17–32 of 256, 64 KiB`) unless every chunk is asked for.

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use bytes::Bytes;

use super::{PaneState, TrafficView};
use crate::engine::JobId;
use crate::service::{Traffic as TrafficEvent, TrafficDirection};

/// Payload bytes kept per line for the detail view.
pub const KEPT_PAYLOAD: usize = 4096;

#[derive(Debug, Clone)]
pub struct TrafficLine {
    /// Position in the whole history (not the ring), for stable selection.
    pub seq: u64,
    pub time: SystemTime,
    pub direction: TrafficDirection,
    pub topic: String,
    pub device: Option<String>,
    pub job: Option<JobId>,
    pub qos: u8,
    pub size: usize,
    pub text: String,
    pub payload: Bytes,
    pub decode_error: bool,
    pub chunks: Option<ChunkRun>,
}

/// Consecutive chunks of one job shown as one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRun {
    pub first: u32,
    pub last: u32,
    pub total: u32,
    pub bytes: u64,
    /// The size of the run's first chunk (whose bytes the line keeps).
    pub first_size: u64,
}

#[derive(Debug)]
pub struct TrafficLog {
    lines: VecDeque<TrafficLine>,
    capacity: usize,
    next_seq: u64,
    /// Lines pushed out of the ring so far.
    pub dropped: u64,
    /// The line a job's chunks are folding into, while its transfer runs.
    open_runs: HashMap<JobId, u64>,
    /// Show every chunk as its own line instead of folding.
    pub show_chunks: bool,
    /// Following the newest line, or frozen where the operator scrolled to.
    pub view: TrafficView,
    pub filter: String,
}

impl PaneState for TrafficLog {
    fn filter(&self) -> &str {
        &self.filter
    }

    fn filter_mut(&mut self) -> &mut String {
        &mut self.filter
    }

    /// The traffic view keeps following or stays frozen where it was: its place is a line, not
    /// a row of the narrowed list.
    fn reset_cursor(&mut self) {}
}

impl TrafficLog {
    pub fn new(capacity: usize) -> Self {
        Self {
            lines: VecDeque::with_capacity(capacity.min(65_536)),
            capacity: capacity.max(1),
            next_seq: 0,
            dropped: 0,
            open_runs: HashMap::new(),
            show_chunks: false,
            view: TrafficView { follow: true, selected: 0, top: 0 },
            filter: String::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &TrafficLine> + ExactSizeIterator {
        self.lines.iter()
    }

    pub fn get(&self, index: usize) -> Option<&TrafficLine> {
        self.lines.get(index)
    }

    pub fn by_seq(&self, seq: u64) -> Option<&TrafficLine> {
        let front = self.lines.front()?.seq;
        self.lines.get(usize::try_from(seq.checked_sub(front)?).ok()?)
    }

    pub fn push(&mut self, time: SystemTime, event: &TrafficEvent, total_chunks: Option<u32>) {
        if let (Some(chunk), Some(job), false) = (event.chunk, event.job, self.show_chunks) {
            if self.extend_run(job, chunk, event.size as u64) {
                return;
            }
            let run = ChunkRun {
                first: chunk,
                last: chunk,
                total: total_chunks.unwrap_or(0),
                bytes: event.size as u64,
                first_size: event.size as u64,
            };
            let seq = self.append(time, event, Some(run));
            self.open_runs.insert(job, seq);
            return;
        }
        if let Some(job) = event.job {
            // Anything else about the job (FOTA_DONE, a response) ends its current run.
            self.open_runs.remove(&job);
        }
        self.append(time, event, None);
    }

    fn extend_run(&mut self, job: JobId, chunk: u32, size: u64) -> bool {
        let Some(seq) = self.open_runs.get(&job).copied() else { return false };
        let Some(front) = self.lines.front().map(|l| l.seq) else { return false };
        let Some(line) = seq.checked_sub(front).and_then(|i| self.lines.get_mut(i as usize)) else {
            self.open_runs.remove(&job);
            return false;
        };
        match &mut line.chunks {
            Some(run) if chunk == run.last + 1 => {
                run.last = chunk;
                run.bytes += size;
                line.size = run.bytes as usize;
                line.text = run_text(line.device.as_deref().unwrap_or("?"), run);
                true
            }
            _ => false,
        }
    }

    fn append(&mut self, time: SystemTime, event: &TrafficEvent, run: Option<ChunkRun>) -> u64 {
        if self.lines.len() >= self.capacity {
            self.lines.pop_front();
            self.dropped += 1;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let device = event.device.as_ref().map(ToString::to_string);
        let text = match (&run, &device) {
            (Some(run), Some(device)) => run_text(device, run),
            _ => event.text.clone(),
        };
        self.lines.push_back(TrafficLine {
            seq,
            time,
            direction: event.direction,
            topic: event.topic.clone(),
            device,
            job: event.job,
            qos: event.qos,
            size: event.size,
            text,
            payload: event.payload.slice(..event.payload.len().min(KEPT_PAYLOAD)),
            decode_error: event.decode_error,
            chunks: run,
        });
        seq
    }
}

fn run_text(device: &str, run: &ChunkRun) -> String {
    let range = if run.first == run.last {
        format!("chunk {}", run.first)
    } else {
        format!("chunks {}–{}", run.first, run.last)
    };
    let of = if run.total > 0 { format!(" of {}", run.total) } else { String::new() };
    format!("data → {device} {range}{of}, {}", crate::tui::format::bytes(run.bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::DeviceId;

    fn chunk(job: JobId, device: &str, n: u32) -> TrafficEvent {
        TrafficEvent {
            direction: TrafficDirection::Out,
            topic: format!("/fota/data/{device}/{n}"),
            qos: 1,
            size: 4096,
            text: format!("data → {device} chunk {n} (4096 B)"),
            payload: Bytes::from(vec![0u8; 4096]),
            device: Some(DeviceId::parse(device).unwrap()),
            job: Some(job),
            decode_error: false,
            chunk: Some(n),
        }
    }

    fn command(job: JobId, device: &str) -> TrafficEvent {
        TrafficEvent {
            chunk: None,
            size: 5,
            text: format!("cmd → {device} [{job}, FOTA_DONE, []]"),
            ..chunk(job, device, 1)
        }
    }

    #[test]
    fn interleaved_chunks_fold_per_job_until_the_job_says_something_else() {
        let mut log = TrafficLog::new(100);
        let t = SystemTime::UNIX_EPOCH;
        for n in 1..=16 {
            log.push(t, &chunk(JobId::new(1), "dev-01", n), Some(256));
            log.push(t, &chunk(JobId::new(2), "dev-02", n), Some(16));
        }
        assert_eq!(log.len(), 2);
        assert_eq!(log.get(0).unwrap().text, "data → dev-01 chunks 1–16 of 256, 64 KiB");
        log.push(t, &command(JobId::new(2), "dev-02"), None);
        log.push(t, &chunk(JobId::new(1), "dev-01", 17), Some(256));
        assert_eq!(log.len(), 3);
        assert_eq!(log.get(0).unwrap().chunks.unwrap().last, 17, "job 1 still folding");
        log.push(t, &chunk(JobId::new(2), "dev-02", 1), Some(16)); // a new transfer of job 2 starts a new line
        assert_eq!(log.len(), 4);
    }

    #[test]
    fn the_ring_is_bounded_and_counts_what_it_drops() {
        let mut log = TrafficLog::new(10);
        for job in 0..25 {
            log.push(SystemTime::UNIX_EPOCH, &command(JobId::new(job), "d"), None);
        }
        assert_eq!((log.len(), log.dropped), (10, 15));
        assert_eq!(log.get(0).unwrap().seq, 15);
        assert_eq!(log.by_seq(20).unwrap().job, Some(JobId::new(20)));
        assert!(log.by_seq(3).is_none());
    }

    #[test]
    fn show_chunks_keeps_every_chunk() {
        let mut log = TrafficLog::new(100);
        log.show_chunks = true;
        for n in 1..=5 {
            log.push(SystemTime::UNIX_EPOCH, &chunk(JobId::new(1), "d", n), Some(5));
        }
        assert_eq!(log.len(), 5);
        assert_eq!(log.get(4).unwrap().text, "data → d chunk 5 (4096 B)");
    }
}
