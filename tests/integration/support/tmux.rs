//! The console in a real terminal: a tmux server of the test's own, its screen read with
//! `capture-pane` and keys typed with `send-keys`.

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmux server of the test's own (its own socket), killed on drop.
pub struct Tmux {
    pub socket: String,
}

impl Tmux {
    pub fn start(test: &str, command: &str) -> Option<Self> {
        Self::start_sized(test, command, (160, 60))
    }

    pub fn start_sized(test: &str, command: &str, (width, height): (u16, u16)) -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("ROCKY_REQUIRE_TMUX").is_none(),
                "tmux not found and ROCKY_REQUIRE_TMUX is set"
            );
            // Written straight to stderr: libtest would swallow eprintln! of a passing test.
            let _ = writeln!(std::io::stderr(), "SKIPPED {test}: tmux not found");
            return None;
        }
        let socket = format!("rocky-{test}-{}", std::process::id());
        let status = Command::new("tmux")
            .args(["-L", &socket, "new-session", "-d", "-s", "rocky"])
            .args(["-x", &width.to_string(), "-y", &height.to_string()])
            .arg(command)
            .env("TERM", "xterm-256color")
            .status()
            .expect("tmux runs");
        assert!(status.success(), "tmux new-session failed");
        Some(Self { socket })
    }

    pub fn screen(&self) -> String {
        let out =
            Command::new("tmux").args(["-L", &self.socket, "capture-pane", "-p", "-t", "rocky"]).output();
        out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default()
    }

    pub fn keys(&self, keys: &[&str]) {
        let status =
            Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "rocky"]).args(keys).status();
        assert!(status.is_ok_and(|s| s.success()), "send-keys {keys:?}");
    }

    pub fn type_text(&self, text: &str) {
        let status =
            Command::new("tmux").args(["-L", &self.socket, "send-keys", "-t", "rocky", "-l", text]).status();
        assert!(status.is_ok_and(|s| s.success()), "send-keys -l {text:?}");
    }

    /// Waits until `check` accepts the screen; fails with the last screen after `timeout`.
    pub fn wait_for<T>(&self, timeout: Duration, what: &str, check: impl Fn(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if let Some(value) = check(&screen) {
                return value;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; screen:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").args(["-L", &self.socket, "kill-server"]).status();
    }
}

/// `(device, state)` for every job row on screen.
pub fn job_states(screen: &str) -> Vec<(String, String)> {
    const STATES: [&str; 12] = [
        "succeeded",
        "up to date",
        "rolled back",
        "confirming",
        "rejected",
        "failed",
        "timed out",
        "cancelled",
        "queued",
        "requesting",
        "transferring",
        "finishing",
    ];
    screen
        .lines()
        .filter(|l| l.starts_with('┃'))
        .filter_map(|line| {
            let cells: Vec<&str> = line.trim_matches('┃').split_whitespace().collect();
            let device = cells.get(1)?.to_string();
            let rest = line.trim_matches('┃');
            let state = STATES.iter().find(|s| rest.contains(&format!(" {s} ")))?;
            device.starts_with("dev-").then(|| (device, state.to_string()))
        })
        .collect()
}
