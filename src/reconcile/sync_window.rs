//! `spec.syncWindows`: when periodic refreshes may run, as ESO decides it. Only scheduled
//! refreshes are gated; a first sync, a spec or annotation change, a missing Secret still sync.
//! Schedules are 5-field cron (or `@daily`-style names, or `@every <duration>`) in UTC; a window
//! is open from each firing until `duration` later, both ends included.

use std::str::FromStr;
use std::time::Duration;

use croner::Cron;
use k8s_openapi::jiff::{Timestamp, tz::TimeZone};

use crate::api::{SyncWindow, SyncWindowKind, SyncWindows};

/// How far ahead [`next_allowed`] looks for a moment when a refresh may run.
const HORIZON: Duration = Duration::from_secs(366 * 24 * 3600);

/// A window's schedule, parsed.
enum Schedule {
    Cron(Box<Cron>),
    /// robfig/cron's `@every`: fires a whole number of seconds after the time asked about.
    Every(Duration),
}

impl Schedule {
    fn parse(s: &str) -> Option<Schedule> {
        let s = s.trim();
        if let Some(d) = s.strip_prefix("@every ") {
            let d = crate::api::duration::parse(d.trim()).ok()?;
            return Some(Schedule::Every(d.max(Duration::from_secs(1))));
        }
        let s = if s.eq_ignore_ascii_case("@midnight") {
            "@daily"
        } else {
            s
        };
        // ESO's parser takes five fields; croner would also take six.
        if !s.starts_with('@') && s.split_whitespace().count() != 5 {
            return None;
        }
        Cron::from_str(s).ok().map(|c| Schedule::Cron(Box::new(c)))
    }

    /// The first firing strictly after `t`.
    fn next_after(&self, t: Timestamp) -> Option<Timestamp> {
        match self {
            Schedule::Every(d) => {
                let whole = Timestamp::from_second(t.as_second()).ok()?;
                whole.checked_add(*d).ok()
            }
            Schedule::Cron(c) => {
                let z = t.to_zoned(TimeZone::UTC);
                c.find_next_occurrence(&z, false)
                    .ok()
                    .map(|n| n.timestamp())
            }
        }
    }
}

struct Window {
    schedule: Schedule,
    duration: Duration,
}

impl Window {
    /// `None` for a window whose schedule or duration does not parse: it is never open.
    fn parse(w: &SyncWindow) -> Option<Window> {
        Some(Window {
            schedule: Schedule::parse(&w.schedule)?,
            duration: crate::api::duration::parse(&w.duration).ok()?,
        })
    }

    /// When the occurrence open at `t` closes, if one is.
    fn open_until(&self, t: Timestamp) -> Option<Timestamp> {
        let back = t.checked_sub(self.duration + Duration::from_secs(1)).ok()?;
        let fired = self.schedule.next_after(back)?;
        (fired <= t)
            .then(|| fired.checked_add(self.duration).ok())
            .flatten()
    }
}

/// Why a window cannot work, for admission: ESO silently treats it as never open.
pub fn check(w: &SyncWindow) -> Result<(), (&'static str, String)> {
    if Schedule::parse(&w.schedule).is_none() {
        return Err((
            "schedule",
            format!(
                "{:?} is not a 5-field cron expression (minute hour day-of-month month day-of-week, UTC), @daily-style name or @every <duration>",
                w.schedule
            ),
        ));
    }
    if let Err(e) = crate::api::duration::parse(&w.duration) {
        return Err(("duration", e.to_string()));
    }
    Ok(())
}

/// Whether a periodic refresh may run at `t`.
pub fn allowed(w: &SyncWindows, t: Timestamp) -> bool {
    let windows: Vec<Window> = w.windows.iter().filter_map(Window::parse).collect();
    allowed_with(w.kind, &windows, t, w.windows.is_empty())
}

fn allowed_with(kind: SyncWindowKind, windows: &[Window], t: Timestamp, none: bool) -> bool {
    if none {
        return true;
    }
    let active = windows.iter().any(|w| w.open_until(t).is_some());
    match kind {
        SyncWindowKind::Allow => active,
        SyncWindowKind::Deny => !active,
    }
}

/// The first moment at or after `t` when a periodic refresh may run; `None` if there is none
/// within a year (e.g. an allow list whose schedules never parse).
pub fn next_allowed(w: &SyncWindows, t: Timestamp) -> Option<Timestamp> {
    let windows: Vec<Window> = w.windows.iter().filter_map(Window::parse).collect();
    if allowed_with(w.kind, &windows, t, w.windows.is_empty()) {
        return Some(t);
    }
    let end = t.checked_add(HORIZON).ok()?;
    match w.kind {
        // The earliest opening of any window.
        SyncWindowKind::Allow => windows
            .iter()
            .filter_map(|win| win.schedule.next_after(t))
            .filter(|at| *at <= end)
            .min(),
        // Step past the active windows' ends until none is open (windows may chain).
        SyncWindowKind::Deny => {
            let mut at = t;
            while at <= end {
                let Some(close) = windows.iter().filter_map(|win| win.open_until(at)).max() else {
                    return Some(at);
                };
                at = close.checked_add(Duration::from_secs(1)).ok()?;
            }
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn windows(kind: SyncWindowKind, entries: &[(&str, &str)]) -> SyncWindows {
        SyncWindows {
            kind,
            windows: entries
                .iter()
                .map(|(schedule, duration)| SyncWindow {
                    schedule: schedule.to_string(),
                    duration: duration.to_string(),
                })
                .collect(),
        }
    }

    /// ESO's `TestIsWithinSyncWindow` (Apache-2.0): a daily window at 22:00 UTC for 2 hours.
    #[test]
    fn eso_is_within_sync_window() {
        let w = Window::parse(&SyncWindow {
            schedule: "0 22 * * *".into(),
            duration: "2h".into(),
        })
        .unwrap();
        let cases = [
            ("at window open (inclusive)", "2026-06-01T22:00:00Z", true),
            ("inside window", "2026-06-01T22:30:00Z", true),
            ("at window close (inclusive)", "2026-06-02T00:00:00Z", true),
            (
                "one second past window close",
                "2026-06-02T00:00:01Z",
                false,
            ),
            (
                "one hour before window opens",
                "2026-06-01T21:00:00Z",
                false,
            ),
            (
                "between two consecutive occurrences",
                "2026-06-02T03:00:00Z",
                false,
            ),
            ("inside the second occurrence", "2026-06-02T22:30:00Z", true),
        ];
        for (name, at, want) in cases {
            assert_eq!(w.open_until(ts(at)).is_some(), want, "{name}");
        }
    }

    /// ESO's `TestIsPeriodicRefreshAllowedByWindows` (Apache-2.0).
    #[test]
    fn eso_is_periodic_refresh_allowed_by_windows() {
        use SyncWindowKind::{Allow, Deny};
        let valid = ("0 22 * * *", "2h");
        let invalid = ("not-a-cron", "2h");
        let inside = "2026-06-01T23:00:00Z";
        let outside = "2026-06-01T20:00:00Z";
        let cases: &[(&str, SyncWindows, &str, bool)] = &[
            (
                "empty list always permits",
                windows(Allow, &[]),
                inside,
                true,
            ),
            (
                "allow: inside permits",
                windows(Allow, &[valid]),
                inside,
                true,
            ),
            (
                "allow: outside blocks",
                windows(Allow, &[valid]),
                outside,
                false,
            ),
            (
                "deny: inside blocks",
                windows(Deny, &[valid]),
                inside,
                false,
            ),
            (
                "deny: outside permits",
                windows(Deny, &[valid]),
                outside,
                true,
            ),
            (
                "allow: only invalid blocks",
                windows(Allow, &[invalid]),
                inside,
                false,
            ),
            (
                "deny: only invalid permits",
                windows(Deny, &[invalid]),
                inside,
                true,
            ),
            (
                "allow: invalid + valid active permits",
                windows(Allow, &[invalid, valid]),
                inside,
                true,
            ),
        ];
        for (name, w, at, want) in cases {
            assert_eq!(allowed(w, ts(at)), *want, "{name}");
        }
    }

    #[test]
    fn schedules_eso_accepts() {
        let at = ts("2026-06-01T00:30:00Z"); // a Monday
        let cases = [
            ("@daily", "1h", true),
            ("@midnight", "1h", true),
            ("@hourly", "10m", false),
            ("@hourly", "30m", true),
            ("@weekly", "1h", false),
            ("0 0 * * 1-5", "1h", true),
            ("0 0 * * 0,6", "1h", false),
            // robfig's @every fires a delay after the time asked about: open only if the delay
            // fits in the duration.
            ("@every 30m", "1h", true),
            ("@every 2h", "1h", false),
            // Six fields (seconds) is not ESO's syntax.
            ("0 0 0 * * *", "1h", false),
        ];
        for (schedule, duration, want) in cases {
            let w = windows(SyncWindowKind::Allow, &[(schedule, duration)]);
            assert_eq!(allowed(&w, at), want, "{schedule} for {duration}");
        }
    }

    #[test]
    fn next_allowed_moment() {
        use SyncWindowKind::{Allow, Deny};
        let nightly = windows(Allow, &[("0 22 * * *", "2h")]);
        assert_eq!(
            next_allowed(&nightly, ts("2026-06-01T12:00:00Z")),
            Some(ts("2026-06-01T22:00:00Z"))
        );
        assert_eq!(
            next_allowed(&nightly, ts("2026-06-01T23:00:00Z")),
            Some(ts("2026-06-01T23:00:00Z"))
        );
        // Two deny windows back to back: the refresh waits for both.
        let freeze = windows(Deny, &[("0 9 * * *", "1h"), ("0 10 * * *", "1h")]);
        assert_eq!(
            next_allowed(&freeze, ts("2026-06-01T09:30:00Z")),
            Some(ts("2026-06-01T11:00:01Z"))
        );
        assert_eq!(
            next_allowed(
                &windows(Allow, &[("not-a-cron", "1h")]),
                ts("2026-06-01T09:30:00Z")
            ),
            None
        );
    }
}
