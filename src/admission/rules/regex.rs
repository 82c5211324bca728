//! Regular expressions in manifests: each must compile as the reconciler compiles it (Go's
//! syntax, through [`crate::goregex`]), within a compile budget per object.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

/// Longest regular expression accepted (the patterns of real manifests are a few dozen bytes).
pub const MAX_REGEX_LEN: usize = 4096;
/// The compiled-size limits a regular expression is tried with, smallest first. The last is the
/// regex crate's default, which the reconciler compiles with: what compiles here runs there.
const REGEX_SIZE_LIMITS: [usize; 4] = [16 << 10, 128 << 10, 1 << 20, 10 << 20];
/// Compiling takes time in proportion to the size limit tried (a pattern such as `\p{L}{1000}`
/// takes over 100 ms to reach 10 MiB, even in a release build), so one object's regular
/// expressions may together use only this much of it: one of the largest plus small ones.
/// Without it, a manifest of thousands of such patterns would hold a worker for minutes.
pub const REGEX_BUDGET: usize = 12 << 20;

/// What checking one pattern found, and how much compiling it took (the sum of the size limits
/// tried); remembered per pattern.
#[derive(Clone)]
struct RegexOutcome {
    result: Result<(), String>,
    cost: usize,
}

/// The compile budget of one object's regular expressions; see [`REGEX_BUDGET`].
pub struct RegexBudget {
    left: usize,
}

impl Default for RegexBudget {
    fn default() -> Self {
        RegexBudget { left: REGEX_BUDGET }
    }
}

impl RegexBudget {
    /// Whether `re` compiles (as the reconciler compiles it), within what is left of the
    /// budget; once a pattern does not fit, none after it is checked. The error completes a
    /// sentence that starts with the quoted pattern.
    pub fn check(&mut self, re: &str) -> Result<(), String> {
        // The same manifests are applied over and over, and compiling a regex costs far more
        // than the rest of the validation: outcomes are remembered per pattern.
        static SEEN: LazyLock<Mutex<HashMap<String, RegexOutcome>>> =
            LazyLock::new(|| Mutex::new(HashMap::new()));
        if re.len() > MAX_REGEX_LEN {
            return Err(format!("is longer than {MAX_REGEX_LEN} bytes"));
        }
        let over_budget = || {
            format!(
                "was not checked: this object's regular expressions would take more than {} MiB compiled together; use fewer or simpler ones",
                REGEX_BUDGET >> 20
            )
        };
        let seen = SEEN
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(re)
            .cloned();
        if let Some(o) = seen {
            // Charged as when it was compiled, so the answer never depends on what was seen.
            if o.cost > self.left {
                self.left = 0;
                return Err(over_budget());
            }
            self.left -= o.cost;
            return o.result;
        }
        let mut cost = 0;
        let mut result = None;
        for limit in REGEX_SIZE_LIMITS {
            if cost + limit > self.left {
                // Not remembered: with more budget left, it may well be checked.
                self.left = 0;
                return Err(over_budget());
            }
            cost += limit;
            match crate::goregex::builder(re).size_limit(limit).build() {
                Ok(_) => {
                    result = Some(Ok(()));
                    break;
                }
                Err(regex::Error::CompiledTooBig(_)) => continue,
                Err(e) => {
                    result = Some(Err(format!(
                        "does not compile: {}",
                        crate::goregex::message(&e)
                    )));
                    break;
                }
            }
        }
        let result = result.unwrap_or_else(|| {
            Err(format!(
                "compiles to more than {} MiB, the most vaultgate runs: counted repetitions of Unicode classes such as \\p{{L}} are large; use e.g. [A-Za-z] or a smaller count",
                REGEX_SIZE_LIMITS[REGEX_SIZE_LIMITS.len() - 1] >> 20
            ))
        });
        self.left -= cost;
        let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: patterns come from users; forgetting them all now and then is harmless.
        if seen.len() >= 4096 {
            seen.clear();
        }
        seen.insert(
            re.to_string(),
            RegexOutcome {
                result: result.clone(),
                cost,
            },
        );
        result
    }
}

/// Whether `re` compiles as the reconciler compiles it (see [`RegexBudget::check`]).
pub fn regex_compiles(re: &str) -> Result<(), String> {
    RegexBudget::default().check(re)
}
