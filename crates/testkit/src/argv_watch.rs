//! Watches every process's command line while a test runs, for a secret
//! that must never be there (/proc/PID/cmdline is readable by every user).
//! Also records which programs it saw, so a test can show it was looking
//! while the program of interest ran.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct ArgvWatch {
    stop: Arc<AtomicBool>,
    found: Arc<Mutex<Vec<String>>>,
    programs: Arc<Mutex<BTreeSet<String>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ArgvWatch {
    pub fn start(secret: &str) -> Self {
        let (stop, found, programs) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(BTreeSet::new())));
        let (s, f, p, secret) = (stop.clone(), found.clone(), programs.clone(), secret.as_bytes().to_vec());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
                    let Ok(argv) = std::fs::read(entry.path().join("cmdline")) else { continue };
                    if argv.is_empty() {
                        continue;
                    }
                    let program = argv.split(|b| *b == 0).next().unwrap_or_default();
                    let name = String::from_utf8_lossy(program.rsplit(|b| *b == b'/').next().unwrap_or_default()).into_owned();
                    p.lock().unwrap().insert(name);
                    if argv.windows(secret.len()).any(|w| w == secret.as_slice()) {
                        f.lock().unwrap().push(String::from_utf8_lossy(&argv).replace('\0', " "));
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        Self { stop, found, programs, thread: Some(thread) }
    }

    /// Stops watching; the command lines that held the secret.
    pub fn finish(mut self) -> (Vec<String>, BTreeSet<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        (std::mem::take(&mut self.found.lock().unwrap()), std::mem::take(&mut self.programs.lock().unwrap()))
    }
}

impl Drop for ArgvWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
