//! The work one template execution may do: a step count and a time limit shared by
//! every function call, and the output cap. The engine resets it per execution; the
//! functions spend it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gotmpl::Value;

/// Most bytes one template may produce (a Secret holds 1 MiB in all).
pub const MAX_OUTPUT: usize = 1 << 20;
/// Function calls, loop iterations and template calls allowed in one execution.
const MAX_STEPS: u64 = 1_000_000;
/// Wall-clock limit for one execution (a safety net behind the step count).
const MAX_TIME: Duration = Duration::from_secs(2);

/// Prefix that marks an exec error raised by a bound, so it maps to `EngineError::Limit`.
pub(super) const LIMIT_MARK: &str = "limit exceeded: ";

/// Shared counters of one execution, seen by every function call.
pub(super) struct Budget {
    steps: AtomicU64,
    start: Mutex<Instant>,
    /// Address of the data map of the running execution (see `index` in `funcs`).
    root: AtomicUsize,
}

impl Budget {
    pub(super) fn new() -> Self {
        Budget {
            steps: AtomicU64::new(0),
            start: Mutex::new(Instant::now()),
            root: AtomicUsize::new(0),
        }
    }

    /// Starts a new execution over `data`.
    pub(super) fn reset(&self, data: &Value) {
        self.steps.store(0, Ordering::Relaxed);
        *self.start.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.root.store(root_ptr(data), Ordering::Relaxed);
    }

    /// Whether `v` is the data map the running execution was given.
    pub(super) fn is_root(&self, v: &Value) -> bool {
        root_ptr(v) != 0 && root_ptr(v) == self.root.load(Ordering::Relaxed)
    }

    /// Spends one step; fails once the step count or the time is used up.
    pub(super) fn step(&self) -> gotmpl::Result<()> {
        let n = self.steps.fetch_add(1, Ordering::Relaxed) + 1;
        if n > MAX_STEPS {
            return Err(gotmpl::TemplateError::Exec(format!(
                "{LIMIT_MARK}more than {MAX_STEPS} steps (function calls, loop iterations)"
            )));
        }
        if n.is_multiple_of(64)
            && self
                .start
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .elapsed()
                > MAX_TIME
        {
            return Err(gotmpl::TemplateError::Exec(format!(
                "{LIMIT_MARK}ran longer than {}s",
                MAX_TIME.as_secs()
            )));
        }
        Ok(())
    }
}

fn root_ptr(v: &Value) -> usize {
    match v {
        Value::Map(m) => Arc::as_ptr(m) as usize,
        _ => 0,
    }
}
