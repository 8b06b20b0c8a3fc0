//! Undo on failure, Incus-style: each finished step of a multi-step change
//! registers how to take itself back; unless the change is declared a
//! success, dropping the `Revert` runs those undos, newest first. A failed
//! undo is logged: the error the caller sees is the one that stopped it.

type Undo<'a> = Box<dyn FnOnce() -> Result<(), String> + 'a>;

#[must_use = "a Revert undoes everything when dropped unless success() is called"]
pub struct Revert<'a> {
    what: &'static str,
    undo: Vec<(String, Undo<'a>)>,
}

impl<'a> Revert<'a> {
    /// `what` names the change in logs.
    pub fn new(what: &'static str) -> Self {
        Self { what, undo: Vec::new() }
    }

    /// How to take back the step just done (`step` names it in logs).
    pub fn add(&mut self, step: impl Into<String>, undo: impl FnOnce() -> Result<(), String> + 'a) {
        self.undo.push((step.into(), Box::new(undo)));
    }

    /// Every step stays.
    pub fn success(mut self) {
        self.undo.clear();
    }
}

impl Drop for Revert<'_> {
    fn drop(&mut self) {
        while let Some((step, undo)) = self.undo.pop() {
            if let Err(e) = undo() {
                tracing::warn!(change = self.what, step, error = %e, "cannot undo a step of a failed change");
            }
        }
    }
}

type AsyncUndo = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>;

/// [`Revert`] for steps whose undo is async (a logout, an LVM command): the
/// caller awaits [`AsyncRevert::revert`] on failure; if the change is
/// dropped midway (a cancelled request), the undos still run, on a task of
/// their own.
#[must_use = "an AsyncRevert undoes everything when dropped unless success() is called"]
pub struct AsyncRevert {
    what: &'static str,
    undo: Vec<(String, AsyncUndo)>,
}

impl AsyncRevert {
    pub fn new(what: &'static str) -> Self {
        Self { what, undo: Vec::new() }
    }

    pub fn add(&mut self, step: impl Into<String>, undo: impl std::future::Future<Output = Result<(), String>> + Send + 'static) {
        self.undo.push((step.into(), Box::pin(undo)));
    }

    pub fn success(mut self) {
        self.undo.clear();
    }

    /// Undoes the finished steps, newest first.
    pub async fn revert(mut self) {
        run_undos(self.what, std::mem::take(&mut self.undo)).await;
    }
}

async fn run_undos(what: &'static str, mut undo: Vec<(String, AsyncUndo)>) {
    while let Some((step, f)) = undo.pop() {
        if let Err(e) = f.await {
            tracing::warn!(change = what, step, error = %e, "cannot undo a step of a failed change");
        }
    }
}

impl Drop for AsyncRevert {
    fn drop(&mut self) {
        let undo = std::mem::take(&mut self.undo);
        if undo.is_empty() {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(run_undos(self.what, undo))),
            Err(_) => tracing::warn!(change = self.what, "dropped outside a runtime: the finished steps stay"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn undoes_newest_first_unless_the_change_succeeded() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let step = |name: &'static str, log: &Arc<Mutex<Vec<&'static str>>>| {
            let log = log.clone();
            move || {
                log.lock().unwrap().push(name);
                if name == "b" { Err("b will not go".to_owned()) } else { Ok(()) }
            }
        };
        {
            let mut r = Revert::new("test");
            r.add("a", step("a", &log));
            r.add("b", step("b", &log));
            r.add("c", step("c", &log));
        }
        assert_eq!(*log.lock().unwrap(), ["c", "b", "a"], "a failed undo does not stop the others");
        log.lock().unwrap().clear();
        let mut r = Revert::new("test");
        r.add("a", step("a", &log));
        r.success();
        assert!(log.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn async_undos_run_newest_first_when_awaited_or_dropped() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let step = |name: &'static str| {
            let log = log.clone();
            async move {
                log.lock().unwrap().push(name);
                Ok(())
            }
        };
        let mut r = AsyncRevert::new("test");
        r.add("a", step("a"));
        r.add("b", step("b"));
        r.revert().await;
        assert_eq!(*log.lock().unwrap(), ["b", "a"]);
        log.lock().unwrap().clear();
        {
            let mut r = AsyncRevert::new("test");
            r.add("c", step("c"));
        }
        for _ in 0..100 {
            if !log.lock().unwrap().is_empty() {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(*log.lock().unwrap(), ["c"], "a dropped change is undone too");
        let mut r = AsyncRevert::new("test");
        r.add("d", step("d"));
        r.success();
        assert_eq!(*log.lock().unwrap(), ["c"]);
    }
}
