//! A printer agent process for end-to-end tests: the real `madoguchi-printer-agent` binary
//! serving `agent-1` of the demo configuration, printing to a virtual printer.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::common::{agent_binary, Server};
use super::vprinter::VirtualPrinter;

/// A running printer agent process.
pub struct Agent {
    child: Option<Child>,
    log: PathBuf,
}

impl Agent {
    pub fn start(server: &Server, printer: &VirtualPrinter, state: &Path, extra: &[&str]) -> Agent {
        let log = state.with_extension(format!("{}.log", std::process::id()));
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let child = Command::new(agent_binary())
            .args([
                "--server",
                &server.url(""),
                "--agent",
                "agent-1",
                "--token",
                "demo-printer",
            ])
            .args(["--printer", &printer.conn(), "--status-interval", "0.2"])
            .arg("--state-dir")
            .arg(state)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start the printer agent");
        Agent {
            child: Some(child),
            log,
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}
