//! A printer agent moved between two server instances on one Redis prints every ticket exactly
//! once: finished jobs are events in the shared log, so the instance it moves to never sends a
//! job printed through the other — even to an agent that lost its own journal.

#[path = "common/agent.rs"]
mod agent;
mod common;
#[path = "common/redis.rs"]
mod test_redis;
#[path = "common/vprinter.rs"]
mod vprinter;

use std::collections::BTreeMap;
use std::time::Duration;

use agent::Agent;
use common::*;
use serde_json::json;
use test_redis::{prefix, TestRedis};
use vprinter::VirtualPrinter;

const WAIT: Duration = Duration::from_secs(60);

async fn instance(dir: &tempfile::TempDir, name: &str, redis: &TestRedis, prefix: &str) -> Server {
    let config = repo_path("config/demo.toml");
    Server::start_on_redis(dir.path(), name, &config, &redis.url, prefix, &[]).await
}

async fn issue_at_kiosk(server: &Server) -> String {
    let (status, reply) = server
        .post(
            "/api/v1/sites/chuo/tickets",
            Some(DISPENSER),
            Some(json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"})),
        )
        .await;
    assert_eq!(status, 201, "{reply}");
    reply["ticket"]["number"].as_str().unwrap().to_owned()
}

async fn printer_online(server: &Server) -> bool {
    server.board().await["printers"][0]["state"] == "online"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_printer_agent_moved_between_instances_prints_every_ticket_once() {
    let Some(redis) = TestRedis::get("a_printer_agent_moved_between_instances") else {
        return;
    };
    let prefix = prefix("printer_moved");
    let dir = tempfile::tempdir().unwrap();
    let a = instance(&dir, "a", &redis, &prefix).await;
    let b = instance(&dir, "b", &redis, &prefix).await;
    let printer = VirtualPrinter::start().await;

    // The agent on A; tickets issued through both instances print there.
    let mut agent = Agent::start(&a, &printer, &dir.path().join("agent-a"), &[]);
    eventually("the printer online", WAIT, || async {
        printer_online(&a).await.then_some(())
    })
    .await;
    let mut issued = Vec::new();
    for i in 0..20 {
        issued.push(issue_at_kiosk(if i % 2 == 0 { &a } else { &b }).await);
    }
    printer.wait_for_tickets(20, WAIT).await;
    eventually("A records every job printed", WAIT, || async {
        (a.job_outcomes().get("printed") == Some(&20)).then_some(())
    })
    .await;

    // The agent goes; more tickets meanwhile; it comes back on B without its journal (a new
    // machine): B must send only what was never printed.
    agent.kill9();
    for _ in 0..10 {
        issued.push(issue_at_kiosk(&a).await);
    }
    let _agent = Agent::start(&b, &printer, &dir.path().join("agent-b"), &[]);
    printer.wait_for_tickets(30, WAIT).await;
    eventually("B records every job printed", WAIT, || async {
        (b.job_outcomes().get("printed") == Some(&30)).then_some(())
    })
    .await;
    eventually("A learns of the jobs printed through B", WAIT, || async {
        (a.job_outcomes().get("printed") == Some(&30)).then_some(())
    })
    .await;

    let mut printed: BTreeMap<String, usize> = BTreeMap::new();
    for t in printer.cut_tickets() {
        *printed.entry(t.big[0].clone()).or_insert(0) += 1;
    }
    assert_eq!(printed.len(), 30, "{printed:?}");
    assert!(
        printed.values().all(|n| *n == 1),
        "printed twice: {printed:?}"
    );
    issued.sort();
    assert_eq!(printed.keys().cloned().collect::<Vec<_>>(), issued);
}
