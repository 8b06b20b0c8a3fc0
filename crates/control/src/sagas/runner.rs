//! Runs sagas on the leader: every stored, unfinished saga is executed by
//! exactly one task here; when leadership is lost they are all stopped (the
//! new leader resumes them from the store).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::app::App;
use crate::keys;

pub struct SagaRunner {
    wake: Notify,
    running: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    leader: watch::Receiver<bool>,
}

impl SagaRunner {
    pub fn new(leader: watch::Receiver<bool>) -> Self {
        Self { wake: Notify::new(), running: Mutex::new(HashMap::new()), leader }
    }

    /// A saga was stored: look now rather than at the next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn is_leader(&self) -> bool {
        *self.leader.borrow()
    }

    /// Aborts every saga this replica runs (they resume from the store).
    pub fn stop_all(&self) {
        for (_, handle) in self.running.lock().expect("runner lock").drain() {
            handle.abort();
        }
    }
}

/// Runs saga `id`, just stored here, now rather than at the loop's next
/// look (which a replica that does not lead leaves to the leader's poll).
pub fn start(app: &Arc<App>, id: &str) {
    if app.runner.is_leader() {
        spawn(app, id);
    } else {
        app.runner.wake();
    }
}

/// Executes saga `id` on a task of its own, unless one already does.
fn spawn(app: &Arc<App>, id: &str) {
    let mut running = app.runner.running.lock().expect("runner lock");
    if running.contains_key(id) {
        return;
    }
    let (app2, id2) = (app.clone(), id.to_owned());
    let handle = tokio::spawn(async move {
        if let Err(e) = super::execute(app2.clone(), id2.clone()).await {
            tracing::warn!(saga = %id2, error = %e, "saga stopped; it is retried from the store");
        }
        app2.runner.running.lock().expect("runner lock").remove(&id2);
    });
    running.insert(id.to_owned(), handle.abort_handle());
}

/// The runner loop; spawned once per process.
pub async fn run(app: Arc<App>) {
    let mut leader = app.runner.leader.clone();
    loop {
        if !*leader.borrow() {
            app.runner.stop_all();
            if leader.changed().await.is_err() {
                return;
            }
            continue;
        }
        match app.repo.store().list(keys::SAGAS, None, 0).await {
            Ok(entries) => {
                for e in entries {
                    spawn(&app, e.key.trim_start_matches(keys::SAGAS));
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list sagas"),
        }
        tokio::select! {
            _ = app.runner.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            changed = leader.changed() => if changed.is_err() { return },
        }
    }
}
