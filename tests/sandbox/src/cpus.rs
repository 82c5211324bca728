//! Splitting the machine's CPUs between vaultgate and the benchmark process. In a cluster the
//! API server has machines of its own; here it shares a few cores with the controller, and
//! each slowed the other: a slower API server cost the controller CPU too, on the cores and
//! caches they shared, so the controller's figures followed the emulator's.

use std::process::Command;

use anyhow::{Context, bail};

/// The CPUs of a kernel CPU list such as `0-3,8,10-11`; `None` if it is not one.
pub fn parse_list(list: &str) -> Option<Vec<usize>> {
    let mut cpus = vec![];
    for part in list.trim().split(',') {
        match part.split_once('-') {
            Some((lo, hi)) => {
                let (lo, hi): (usize, usize) = (lo.parse().ok()?, hi.parse().ok()?);
                if lo > hi {
                    return None;
                }
                cpus.extend(lo..=hi);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

/// A CPU list as the kernel (and `taskset -c`) writes one, without ranges.
pub fn format_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The CPUs this process may run on.
pub fn allowed() -> anyhow::Result<Vec<usize>> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .context("Cpus_allowed_list in /proc/self/status")?;
    parse_list(list).with_context(|| format!("Cpus_allowed_list {list:?}"))
}

/// vaultgate's CPU and the benchmark's: the first one, and the rest. `None` with fewer than two.
pub fn split(cpus: &[usize]) -> Option<(Vec<usize>, Vec<usize>)> {
    match cpus {
        [first, rest @ ..] if !rest.is_empty() => Some((vec![*first], rest.to_vec())),
        _ => None,
    }
}

/// Restricts every thread of process `pid` to `cpus`; threads it starts later inherit that.
pub fn restrict(pid: u32, cpus: &[usize]) -> anyhow::Result<()> {
    let out = Command::new("taskset")
        .args(["-a", "-p", "-c", &format_list(cpus), &pid.to_string()])
        .output()
        .context("taskset (util-linux) splits the CPUs for the sync benchmark")?;
    if !out.status.success() {
        bail!(
            "taskset -a -p -c {} {pid}: {}",
            format_list(cpus),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// vaultgate on a CPU of its own and this process on the others, until dropped.
pub struct Split {
    all: Vec<usize>,
    vaultgate: Vec<usize>,
}

impl Split {
    /// `None` on a machine (or cgroup) of one CPU: there both share it.
    pub fn start() -> anyhow::Result<Option<Split>> {
        let all = allowed()?;
        let Some((vaultgate, rest)) = split(&all) else {
            return Ok(None);
        };
        restrict(std::process::id(), &rest)?;
        Ok(Some(Split { all, vaultgate }))
    }

    /// The CPUs to start vaultgate on.
    pub fn vaultgate(&self) -> &[usize] {
        &self.vaultgate
    }
}

impl Drop for Split {
    fn drop(&mut self) {
        if let Err(e) = restrict(std::process::id(), &self.all) {
            eprintln!("giving the benchmark back its CPUs: {e:#}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        for (list, want) in [
            ("0", Some(vec![0])),
            ("0-1", Some(vec![0, 1])),
            ("0-3,8,10-11\n", Some(vec![0, 1, 2, 3, 8, 10, 11])),
            (" 2 ", Some(vec![2])),
            ("3-1", None),
            ("", None),
            ("a-b", None),
        ] {
            assert_eq!(parse_list(list), want, "{list:?}");
        }
        assert_eq!(format_list(&[0, 2, 3]), "0,2,3");
    }

    #[test]
    fn splits() {
        assert_eq!(split(&[0]), None);
        assert_eq!(split(&[]), None);
        assert_eq!(split(&[0, 1]), Some((vec![0], vec![1])));
        assert_eq!(split(&[4, 5, 6]), Some((vec![4], vec![5, 6])));
    }
}
