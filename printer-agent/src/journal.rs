//! The agent's memory of jobs, in its state directory, so a job re-sent after a crash or restart
//! is never printed twice.
//!
//! One line per step, appended: `P id` before the bytes go to the printer, `D id outcome` once the
//! job is finished. A job with `P` but no `D` was being printed when the agent stopped: it may have
//! printed, so it is not printed again and is reported as `uncertain`. Lines older than a week are
//! dropped when the agent starts.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use madoguchi_wire::JobOutcome;

const KEEP_SECONDS: i64 = 7 * 24 * 3600;
const FILE_NAME: &str = "jobs.log";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Bytes were (being) sent when the agent last stopped.
    Printing,
    Done(JobOutcome),
}

pub struct Journal {
    path: PathBuf,
    file: File,
    jobs: HashMap<String, Entry>,
}

fn outcome_name(o: JobOutcome) -> &'static str {
    match o {
        JobOutcome::Printed => "printed",
        JobOutcome::Expired => "expired",
        JobOutcome::Uncertain => "uncertain",
    }
}

fn parse_outcome(s: &str) -> Option<JobOutcome> {
    match s {
        "printed" => Some(JobOutcome::Printed),
        "expired" => Some(JobOutcome::Expired),
        "uncertain" => Some(JobOutcome::Uncertain),
        _ => None,
    }
}

impl Journal {
    /// Opens (and compacts) the journal in `dir`, creating the directory if needed.
    pub fn open(dir: &Path) -> anyhow::Result<Journal> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
        let path = dir.join(FILE_NAME);
        let now = chrono::Utc::now().timestamp();
        let mut jobs = HashMap::new();
        let mut kept = Vec::new();
        if let Ok(file) = File::open(&path) {
            for line in BufReader::new(file).lines() {
                let line = line.with_context(|| format!("cannot read {}", path.display()))?;
                let parts: Vec<&str> = line.split_whitespace().collect();
                let (entry, id, at) = match parts.as_slice() {
                    ["P", id, at] => (Entry::Printing, *id, at),
                    ["D", id, outcome, at] => match parse_outcome(outcome) {
                        Some(o) => (Entry::Done(o), *id, at),
                        None => continue,
                    },
                    // A line cut short by a crash, or damage: skip it.
                    _ => continue,
                };
                let Ok(at) = at.parse::<i64>() else { continue };
                if now - at > KEEP_SECONDS {
                    continue;
                }
                // `Done` is final; `Printing` never overrides it.
                if !matches!(jobs.get(id), Some(Entry::Done(_))) {
                    jobs.insert(id.to_owned(), entry);
                }
                kept.push(line);
            }
        }
        // Rewrite what is kept, then swap it in atomically.
        let tmp = dir.join(format!("{FILE_NAME}.tmp"));
        {
            let mut out =
                File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
            for line in &kept {
                writeln!(out, "{line}")?;
            }
            out.sync_all()?;
        }
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("cannot replace {}", path.display()))?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Journal { path, file, jobs })
    }

    pub fn get(&self, id: &str) -> Option<Entry> {
        self.jobs.get(id).copied()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Written just before the bytes go out. Not synced to disk: it guards against a crash of
    /// the agent (the operating system keeps the write), and syncing here would widen the window
    /// between this line and the print.
    pub fn printing(&mut self, id: &str) -> std::io::Result<()> {
        let line = format!("P {id} {}\n", chrono::Utc::now().timestamp());
        self.file.write_all(line.as_bytes())?;
        self.jobs.insert(id.to_owned(), Entry::Printing);
        Ok(())
    }

    /// Written once a job is finished, and synced: from here on it is never printed again.
    pub fn done(&mut self, id: &str, outcome: JobOutcome) -> std::io::Result<()> {
        let line = format!(
            "D {id} {} {}\n",
            outcome_name(outcome),
            chrono::Utc::now().timestamp()
        );
        self.file.write_all(line.as_bytes())?;
        self.file.sync_data()?;
        self.jobs.insert(id.to_owned(), Entry::Done(outcome));
        Ok(())
    }

    /// Forgets an attempt whose bytes certainly did not reach the printer (the connection
    /// failed), so the job is printed when the printer is back.
    pub fn abandon(&mut self, id: &str) {
        self.jobs.remove(id);
        // The `P` line stays in the file; a later `D` or a restart decides. On restart a lone
        // `P` means uncertain, which is the safe side.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopening_and_keeps_done_final() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut j = Journal::open(dir.path()).unwrap();
            j.printing("a").unwrap();
            j.done("a", JobOutcome::Printed).unwrap();
            j.printing("b").unwrap();
            j.done("c", JobOutcome::Expired).unwrap();
        }
        // A torn last line from a crash is ignored.
        std::fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(FILE_NAME))
            .unwrap()
            .write_all(b"D d prin")
            .unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.get("a"), Some(Entry::Done(JobOutcome::Printed)));
        assert_eq!(j.get("b"), Some(Entry::Printing));
        assert_eq!(j.get("c"), Some(Entry::Done(JobOutcome::Expired)));
        assert_eq!(j.get("d"), None);
    }
}
