//! End-to-end printing with the real server and agent binaries and a virtual printer on a real
//! TCP socket: 200 tickets, paper end, an agent killed mid-stream, a server restarted, old jobs.

#[path = "common/agent.rs"]
mod agent;
mod common;
#[path = "common/vprinter.rs"]
mod vprinter;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use agent::Agent;
use common::*;
use serde_json::{json, Value};
use vprinter::{Status, VirtualPrinter};

const WAIT: Duration = Duration::from_secs(60);

async fn issue_at_kiosk(server: &Server, i: usize) -> Value {
    let body = if i.is_multiple_of(2) {
        json!({"procedures": ["shoumei"], "dispenser": "kiosk-1"})
    } else {
        json!({"life_event": "moving_in", "dispenser": "kiosk-1",
               "answers": {"children": true, "kokuho": false, "over_65": false, "over_75": false}})
    };
    let (status, reply) = server
        .post("/api/v1/sites/chuo/tickets", Some(DISPENSER), Some(body))
        .await;
    assert_eq!(status, 201, "{reply}");
    reply
}

/// Number → how many times it was printed (cut tickets only).
fn printed_counts(printer: &VirtualPrinter) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in printer.cut_tickets() {
        assert_eq!(t.big.len(), 1, "one big number per ticket: {:?}", t.lines);
        *counts.entry(t.big[0].clone()).or_insert(0) += 1;
    }
    counts
}

async fn printer_state(server: &Server) -> String {
    let board = server.board().await;
    board["printers"][0]["state"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

#[tokio::test]
async fn two_hundred_tickets_give_two_hundred_cuts_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let printer = VirtualPrinter::start().await;
    let server = Server::start(&dir.path().join("data")).await;
    let _agent = Agent::start(&server, &printer, &dir.path().join("agent"), &[]);
    eventually("the agent to report the printer online", WAIT, || async {
        (printer_state(&server).await == "online").then_some(())
    })
    .await;

    let mut issued = Vec::new();
    let mut started = Vec::new();
    for i in 0..200 {
        started.push(Instant::now());
        let reply = issue_at_kiosk(&server, i).await;
        assert_eq!(reply["printer"]["state"], "online");
        issued.push(reply["ticket"].clone());
    }
    let tickets = printer.wait_for_tickets(200, WAIT).await;
    assert_eq!(tickets.len(), 200);
    for (t, want) in tickets.iter().zip(&issued) {
        assert!(t.cut);
        assert_eq!(
            t.big,
            vec![want["number"].as_str().unwrap().to_owned()],
            "in issue order"
        );
        assert!(t.contains("中央区役所"), "{}", t.text());
        assert!(t.contains("Chuo Ward Office"));
        assert!(
            t.kanji_on && t.kanji_code == Some(1),
            "Shift_JIS and Kanji mode selected"
        );
        let url = format!(
            "http://127.0.0.1:8080/t/{}",
            want["token"].as_str().unwrap()
        );
        assert_eq!(t.qr, vec![url]);
    }
    assert!(
        tickets[1].contains("・住民異動届"),
        "the visit plan is printed: {}",
        tickets[1].text()
    );
    assert!(
        printed_counts(&printer).values().all(|&n| n == 1),
        "no duplicates"
    );
    assert_eq!(
        printer.stray_nuls(),
        0,
        "status requests are exactly 10 04 n"
    );
    eventually("every job to be acknowledged", WAIT, || async {
        (server.job_outcomes().get("printed") == Some(&200)).then_some(())
    })
    .await;

    // Time from the issue request to the last byte of the ticket at the printer.
    let cuts = printer.cut_times();
    let mut latency: Vec<Duration> = cuts.iter().zip(&started).map(|(c, s)| *c - *s).collect();
    latency.sort();
    eprintln!(
        "issue request → cut at the printer over 200 tickets: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latency, 50.0).as_secs_f64() * 1e3,
        percentile(&latency, 99.0).as_secs_f64() * 1e3,
        latency.last().unwrap().as_secs_f64() * 1e3,
    );
}

#[tokio::test]
async fn tickets_wait_for_paper_and_print_once_when_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let printer = VirtualPrinter::start().await;
    let server = Server::start(&dir.path().join("data")).await;
    let _agent = Agent::start(&server, &printer, &dir.path().join("agent"), &[]);
    for i in 0..3 {
        issue_at_kiosk(&server, i).await;
    }
    printer.wait_for_tickets(3, WAIT).await;

    printer.set_status(Status::PaperEnd);
    eventually("the board to show paper end", WAIT, || async {
        (printer_state(&server).await == "paper_end").then_some(())
    })
    .await;
    let (_, metrics) = server.get("/metrics", None).await;
    let metrics = metrics.as_str().unwrap().to_owned();
    assert!(
        metrics.contains(
            r#"madoguchi_printer_state{printer="agent-1",site="chuo",state="paper_end"} 1"#
        ),
        "{metrics}"
    );
    let mut waiting = Vec::new();
    for i in 3..8 {
        let reply = issue_at_kiosk(&server, i).await;
        assert_eq!(reply["printer"]["state"], "paper_end");
        assert_eq!(
            reply["printer"]["needs_staff"], true,
            "the kiosk tells the resident to ask staff"
        );
        waiting.push(reply["ticket"]["number"].as_str().unwrap().to_owned());
    }
    // While out of paper the agent keeps asking the printer, and sends it no ticket.
    let asked = printer.status_requests();
    printer
        .wait_until("more status requests", WAIT, |p| {
            p.status_requests() > asked + 6
        })
        .await;
    assert_eq!(printer.cut_tickets().len(), 3);

    printer.set_status(Status::Online);
    let tickets = printer.wait_for_tickets(8, WAIT).await;
    let late: Vec<String> = tickets[3..].iter().map(|t| t.big[0].clone()).collect();
    assert_eq!(
        late, waiting,
        "held tickets print in order once paper is back"
    );
    assert!(printed_counts(&printer).values().all(|&n| n == 1));
    assert_eq!(
        printer.bytes_while_not_ready(),
        0,
        "nothing was sent to a printer without paper"
    );
    eventually("the board to show the printer online", WAIT, || async {
        (printer_state(&server).await == "online").then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_agent_killed_mid_stream_prints_every_ticket_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let printer = VirtualPrinter::start().await;
    let server = Server::start(&dir.path().join("data")).await;
    let state = dir.path().join("agent");
    let mut agent = Agent::start(&server, &printer, &state, &[]);
    let mut numbers = Vec::new();
    for i in 0..60 {
        let reply = issue_at_kiosk(&server, i).await;
        numbers.push(reply["ticket"]["number"].as_str().unwrap().to_owned());
        if i == 30 {
            // Kill it while it is printing the stream.
            printer
                .wait_until("some tickets printed", WAIT, |p| {
                    p.cut_tickets().len() >= 10
                })
                .await;
            agent.kill9();
        }
    }
    let before_restart = printer.cut_tickets().len();
    assert!(before_restart < 60, "the agent was killed before finishing");
    let agent = Agent::start(&server, &printer, &state, &[]);
    printer.wait_for_tickets(60, WAIT).await;
    let counts = printed_counts(&printer);
    for n in &numbers {
        assert_eq!(
            counts.get(n),
            Some(&1),
            "ticket {n} printed once\n{}",
            agent.output()
        );
    }
    assert_eq!(counts.len(), 60);
    eventually("every job to be acknowledged", WAIT, || async {
        let outcomes = server.job_outcomes();
        (!outcomes.contains_key("pending")).then_some(outcomes)
    })
    .await;
}

#[tokio::test]
async fn a_restarted_server_resends_unfinished_jobs_and_none_prints_twice() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let printer = VirtualPrinter::start().await;
    let mut server = Server::start(&data).await;
    let state = dir.path().join("agent");
    let _agent = Agent::start(&server, &printer, &state, &[]);
    let mut numbers = Vec::new();
    for i in 0..5 {
        numbers.push(
            issue_at_kiosk(&server, i).await["ticket"]["number"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    printer.wait_for_tickets(5, WAIT).await;
    // Out of paper: the next jobs stay unfinished at the agent when the server dies.
    printer.set_status(Status::PaperEnd);
    eventually("paper end on the board", WAIT, || async {
        (printer_state(&server).await == "paper_end").then_some(())
    })
    .await;
    for i in 5..10 {
        numbers.push(
            issue_at_kiosk(&server, i).await["ticket"]["number"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let addr = server.addr;
    server.kill9();
    // Same address, so the agent finds it again.
    let server = Server::start_at(&data, &repo_path("config/demo.toml"), addr).await;
    for i in 10..15 {
        numbers.push(
            issue_at_kiosk(&server, i).await["ticket"]["number"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    printer.set_status(Status::Online);
    printer.wait_for_tickets(15, WAIT).await;
    let counts = printed_counts(&printer);
    for n in &numbers {
        assert_eq!(counts.get(n), Some(&1), "ticket {n} printed once");
    }
    assert_eq!(counts.len(), 15);
    eventually(
        "every job to be acknowledged after the restart",
        WAIT,
        || async { (server.job_outcomes().get("printed") == Some(&15)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_job_too_old_to_print_is_reported_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let printer = VirtualPrinter::start().await;
    let server = Server::start(&dir.path().join("data")).await;
    let _agent = Agent::start(
        &server,
        &printer,
        &dir.path().join("agent"),
        &["--max-job-age", "1"],
    );
    printer.set_status(Status::CoverOpen);
    eventually("cover open on the board", WAIT, || async {
        (printer_state(&server).await == "cover_open").then_some(())
    })
    .await;
    issue_at_kiosk(&server, 0).await;
    eventually("the job to expire", WAIT, || async {
        (server.job_outcomes().get("expired") == Some(&1)).then_some(())
    })
    .await;
    printer.set_status(Status::Online);
    let fresh = issue_at_kiosk(&server, 1).await;
    let tickets = printer.wait_for_tickets(1, WAIT).await;
    assert_eq!(tickets.len(), 1, "only the fresh ticket printed");
    assert_eq!(
        tickets[0].big[0],
        fresh["ticket"]["number"].as_str().unwrap()
    );
}

#[test]
fn dry_run_and_print_test_write_a_decodable_ticket() {
    let dir = tempfile::tempdir().unwrap();
    for width in ["80", "58"] {
        let out = dir.path().join(format!("ticket-{width}.bin"));
        let status = Command::new(agent_binary())
            .args(["print-test", "--width", width, "--dry-run"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&out).unwrap();
        let tickets = vprinter::tickets_of(&vprinter::decode(&bytes));
        assert_eq!(tickets.len(), 1);
        let t = &tickets[0];
        assert!(t.cut && t.kanji_on);
        assert_eq!(t.big, vec!["123".to_owned()]);
        assert!(t.contains("中央区役所"));
        assert!(
            t.lines.iter().all(|l| l.chars().count() <= 48),
            "{:?}",
            t.lines
        );
    }
}
