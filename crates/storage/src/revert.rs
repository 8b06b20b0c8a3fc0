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
}
