//! Self-test of the virtual ESC/POS printer used by the end-to-end tests.

#[path = "common/vprinter.rs"]
mod vprinter;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use encoding_rs::SHIFT_JIS;
use escpos::printer::Printer;
use escpos::utils::{Encoder, JustifyMode, Protocol};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use vprinter::{decode, tickets_of, Item, Status, VirtualPrinter};

const TIMEOUT: Duration = Duration::from_secs(10);
const URL: &str = "http://127.0.0.1:8080/t/abc";

/// An escpos driver collecting everything written.
#[derive(Clone, Default)]
struct VecDriver(Arc<Mutex<Vec<u8>>>);

impl escpos::driver::Driver for VecDriver {
    fn name(&self) -> String {
        "vec".to_owned()
    }
    fn write(&self, data: &[u8]) -> escpos::errors::Result<()> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(())
    }
    fn read(&self, _buf: &mut [u8]) -> escpos::errors::Result<usize> {
        Ok(0)
    }
    fn flush(&self) -> escpos::errors::Result<()> {
        Ok(())
    }
}

/// A ticket the way the agent is expected to print one.
fn sample_ticket(number: &str, url: &str) -> Vec<u8> {
    let driver = VecDriver::default();
    let protocol = Protocol::new(Encoder::new(SHIFT_JIS));
    Printer::new(driver.clone(), protocol, None)
        .init()
        .unwrap()
        .custom(&[0x1C, 0x43, 0x01]) // FS C 1: Shift_JIS
        .unwrap()
        .custom(&[0x1C, 0x26]) // FS &: kanji mode on
        .unwrap()
        .justify(JustifyMode::CENTER)
        .unwrap()
        .writeln("中央区役所")
        .unwrap()
        .writeln("市民課 受付番号  ")
        .unwrap()
        .size(5, 5)
        .unwrap()
        .writeln(number)
        .unwrap()
        .reset_size()
        .unwrap()
        .qrcode(url)
        .unwrap()
        .writeln("お呼び出しまでお待ちください")
        .unwrap()
        .print_cut()
        .unwrap();
    let bytes = driver.0.lock().unwrap().clone();
    bytes
}

async fn connect(vp: &VirtualPrinter) -> TcpStream {
    TcpStream::connect(vp.addr()).await.expect("connect")
}

/// Sends a status request and reads the one-byte answer.
async fn ask(stream: &mut TcpStream, request: &[u8]) -> u8 {
    stream.write_all(request).await.unwrap();
    let mut answer = [0u8; 1];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut answer))
        .await
        .expect("status answer in time")
        .expect("status answer");
    answer[0]
}

/// Whether the peer closed or reset the connection within the timeout.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 16];
    loop {
        match tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn escpos_ticket_over_tcp_decodes() {
    let vp = VirtualPrinter::start().await;
    assert_eq!(vp.conn(), format!("tcp://{}", vp.addr()));
    let sent = sample_ticket("123", URL);

    let mut stream = connect(&vp).await;
    stream.write_all(&sent).await.unwrap();
    stream.flush().await.unwrap();

    let tickets = vp.wait_for_tickets(1, TIMEOUT).await;
    assert_eq!(tickets.len(), 1, "{tickets:#?}");
    let t = &tickets[0];
    assert!(t.cut);
    assert!(t.lines.iter().any(|l| l == "中央区役所"), "{:?}", t.lines);
    assert!(t.contains("中央区役所"));
    assert!(t.contains("市民課 受付番号"));
    assert!(t.lines.iter().all(|l| !l.ends_with(' ')), "{:?}", t.lines);
    assert_eq!(t.big, vec!["123".to_owned()]);
    assert_eq!(t.qr, vec![URL.to_owned()]);
    assert!(t.kanji_on);
    assert_eq!(t.kanji_code, Some(1));
    assert!(t.items.contains(&Item::QrPrint));
    assert!(t.items.contains(&Item::Align(1)));
    assert_eq!(t.items.first(), Some(&Item::Init));
    assert_eq!(t.items.last(), Some(&Item::Cut { partial: false }));
    assert!(
        !t.items.iter().any(|i| matches!(i, Item::Unknown(_))),
        "{:?}",
        t.items
    );
    assert_eq!(vp.bytes(), sent);
    assert_eq!(vp.cut_times().len(), 1);
    assert_eq!(vp.status_requests(), 0);
    assert_eq!(vp.bytes_while_not_ready(), 0);
    assert_eq!(vp.connections(), 1);
}

#[tokio::test]
async fn status_requests_are_answered_not_logged() {
    let vp = VirtualPrinter::start().await;
    let mut stream = connect(&vp).await;

    // (status, [n=1, n=2, n=3, n=4])
    let table = [
        (Status::Online, [0x12, 0x12, 0x12, 0x12]),
        (Status::PaperNearEnd, [0x12, 0x12, 0x12, 0x1E]),
        (Status::PaperEnd, [0x1A, 0x32, 0x12, 0x7E]),
        (Status::CoverOpen, [0x1A, 0x56, 0x12, 0x12]),
        (Status::Offline, [0x1A, 0x12, 0x12, 0x12]),
    ];
    let mut requests = 0;
    for (status, answers) in table {
        vp.set_status(status);
        assert_eq!(vp.status(), status);
        for n in 1..=4u8 {
            let got = ask(&mut stream, &[0x10, 0x04, n]).await;
            requests += 1;
            assert_eq!(
                got,
                answers[n as usize - 1],
                "{status:?} n={n}: got {got:#04x}"
            );
        }
    }
    assert_eq!(vp.status_requests(), requests);
    assert!(vp.bytes().is_empty(), "{:02x?}", vp.bytes());
    assert!(vp.tickets().is_empty());
    assert_eq!(vp.stray_nuls(), 0);

    // A request split across writes is still a request.
    vp.set_status(Status::Online);
    stream.write_all(&[0x10]).await.unwrap();
    stream.flush().await.unwrap();
    tokio::task::yield_now().await;
    stream.write_all(&[0x04]).await.unwrap();
    stream.flush().await.unwrap();
    assert_eq!(ask(&mut stream, &[0x01]).await, 0x12);

    // The escpos crate's helper sends `10 04 n 00`: the NUL is dropped and counted.
    assert_eq!(ask(&mut stream, &[0x10, 0x04, 0x04, 0x00]).await, 0x12);
    // A following request on the same connection proves the NUL has been processed.
    assert_eq!(ask(&mut stream, &[0x10, 0x04, 0x01]).await, 0x12);
    assert_eq!(vp.stray_nuls(), 1);
    assert!(vp.bytes().is_empty(), "{:02x?}", vp.bytes());
    assert_eq!(vp.status_requests(), requests + 3);

    // Bytes received while not ready are logged but counted; DLE EOT 7 is not a 1..=4 request.
    vp.set_status(Status::CoverOpen);
    stream
        .write_all(&[b'a', b'b', 0x10, 0x04, 0x07, 0x01])
        .await
        .unwrap();
    assert_eq!(ask(&mut stream, &[0x10, 0x04, 0x02]).await, 0x56);
    assert_eq!(vp.bytes(), vec![b'a', b'b', 0x10, 0x04, 0x07, 0x01]);
    assert_eq!(vp.bytes_while_not_ready(), 6);
    vp.set_status(Status::Online);
    stream.write_all(b"cd").await.unwrap();
    assert_eq!(ask(&mut stream, &[0x10, 0x04, 0x01]).await, 0x12);
    assert_eq!(vp.bytes_while_not_ready(), 6);
    assert_eq!(vp.bytes().len(), 8);
}

#[tokio::test]
async fn unreachable_printer_closes_connections() {
    let vp = VirtualPrinter::start().await;
    let mut open = connect(&vp).await;
    assert_eq!(ask(&mut open, &[0x10, 0x04, 0x01]).await, 0x12);

    vp.set_reachable(false);
    let started = Instant::now();
    assert!(closed(&mut open).await, "open connection not closed");

    // New connections are accepted and reset at once (or refused outright).
    if let Ok(mut fresh) = TcpStream::connect(vp.addr()).await {
        assert!(closed(&mut fresh).await, "new connection not closed");
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    vp.wait_until("a refused connection", TIMEOUT, |vp| vp.refused() >= 1)
        .await;

    vp.set_reachable(true);
    let mut again = connect(&vp).await;
    assert_eq!(ask(&mut again, &[0x10, 0x04, 0x01]).await, 0x12);
    again.write_all(&sample_ticket("7", URL)).await.unwrap();
    let tickets = vp.wait_for_tickets(1, TIMEOUT).await;
    assert_eq!(tickets[0].big, vec!["7".to_owned()]);
    assert_eq!(vp.connections(), 2);
}

#[tokio::test]
async fn two_tickets_split_at_cuts() {
    let vp = VirtualPrinter::start().await;
    let mut sent = sample_ticket("1", "http://127.0.0.1:8080/t/one");
    sent.extend(sample_ticket("2", "http://127.0.0.1:8080/t/two"));
    let before = Instant::now();

    // Odd-sized chunks so commands and Shift_JIS characters straddle reads.
    let mut stream = connect(&vp).await;
    for chunk in sent.chunks(7) {
        stream.write_all(chunk).await.unwrap();
        stream.flush().await.unwrap();
        tokio::task::yield_now().await;
    }

    let tickets = vp.wait_for_tickets(2, TIMEOUT).await;
    assert_eq!(tickets.len(), 2, "{tickets:#?}");
    assert_eq!(tickets[0].big, vec!["1".to_owned()]);
    assert_eq!(tickets[1].big, vec!["2".to_owned()]);
    assert_eq!(
        tickets[0].qr,
        vec!["http://127.0.0.1:8080/t/one".to_owned()]
    );
    assert_eq!(
        tickets[1].qr,
        vec!["http://127.0.0.1:8080/t/two".to_owned()]
    );
    for t in &tickets {
        assert!(t.cut && t.kanji_on && t.kanji_code == Some(1));
        assert!(t.contains("中央区役所"), "{:?}", t.lines);
        assert!(t.contains("お呼び出しまでお待ちください"), "{:?}", t.lines);
    }
    assert_eq!(vp.bytes(), sent);
    let cuts = vp.cut_times();
    assert_eq!(cuts.len(), 2);
    assert!(before <= cuts[0] && cuts[0] <= cuts[1]);

    // Trailing data without a cut forms an uncut last ticket; the cut count stays.
    stream.write_all(b"tail\n").await.unwrap();
    vp.wait_until("an uncut tail ticket", TIMEOUT, |vp| {
        vp.tickets().len() == 3
    })
    .await;
    let all = vp.tickets();
    assert!(!all[2].cut);
    assert_eq!(all[2].lines, vec!["tail".to_owned()]);
    assert_eq!(vp.cut_times().len(), 2);
    assert_eq!(vp.cut_tickets().len(), 2);
}

#[test]
fn decodes_commands() {
    let (sjis, _, _) = SHIFT_JIS.encode("窓口");
    let mut bytes = vec![
        0x1B, b'@', 0x1C, b'C', 1, 0x1C, b'&', 0x1B, b'a', 1, 0x1B, b'E', 1,
    ];
    bytes.extend_from_slice(&sjis);
    bytes.extend_from_slice(&[0x0A, 0x1D, b'!', 0x22, b'4', b'2', 0x1D, b'!', 0x00]);
    bytes.extend_from_slice(&[0x1B, b'd', 2, 0x1B, b'-', 1, 0x1B, b'M', 1, 0x1B, b'2']);
    bytes.extend_from_slice(&[0x1B, b'3', 30, 0x1B, b't', 1, 0x1C, b'.', 0x0D]);
    bytes.extend_from_slice(&[0x1D, b'(', b'k', 4, 0, 49, 65, 50, 0]);
    bytes.extend_from_slice(&[0x1D, b'(', b'k', 6, 0, 49, 80, 48, b'a', b'b', b'c']);
    bytes.extend_from_slice(&[0x1D, b'(', b'k', 3, 0, 49, 81, 48]);
    bytes.extend_from_slice(&[0x1D, b'V', 66, 3, 0x1D, b'V', 1, 0x1D, b'V', 48]);
    bytes.extend_from_slice(&[0x1B, b'x', b'y', 0x1D, b'V', 65]);
    assert_eq!(
        decode(&bytes),
        vec![
            Item::Init,
            Item::KanjiCode(1),
            Item::KanjiOn,
            Item::Align(1),
            Item::Bold(true),
            Item::Text("窓口".to_owned()),
            Item::Newline,
            Item::Size {
                width: 3,
                height: 3
            },
            Item::Text("42".to_owned()),
            Item::Size {
                width: 1,
                height: 1
            },
            Item::Feed(2),
            Item::Underline(1),
            Item::Font(1),
            Item::LineSpacing(None),
            Item::LineSpacing(Some(30)),
            Item::CodePage(1),
            Item::KanjiOff,
            Item::Unknown(vec![0x0D]),
            Item::QrSetting {
                fn_code: 65,
                value: vec![50, 0]
            },
            Item::QrStore("abc".to_owned()),
            Item::QrPrint,
            Item::Cut { partial: true },
            Item::Cut { partial: true },
            Item::Cut { partial: false },
            Item::Unknown(vec![0x1B, b'x']),
            Item::Text("y".to_owned()),
            // Truncated GS V A (no n yet): not a cut.
            Item::Unknown(vec![0x1D, b'V', 65]),
        ]
    );
    let tickets = tickets_of(&decode(&bytes));
    assert_eq!(tickets.len(), 4);
    assert_eq!(tickets[0].lines, vec!["窓口".to_owned(), "42".to_owned()]);
    assert_eq!(tickets[0].big, vec!["42".to_owned()]);
    assert_eq!(tickets[0].qr, vec!["abc".to_owned()]);
    assert!(tickets[0].kanji_on && tickets[0].kanji_code == Some(1));
    assert_eq!(tickets[0].text(), "窓口\n42");
    assert!(tickets[1].items == vec![Item::Cut { partial: true }]);
    assert!(!tickets[3].cut && !tickets[3].kanji_on && tickets[3].kanji_code.is_none());
    assert_eq!(tickets[3].lines, vec!["y".to_owned()]);

    // Invalid Shift_JIS becomes U+FFFD; a lone lead byte does not swallow a control byte.
    assert_eq!(
        decode(&[0x82, 0x0A, b'a']),
        vec![
            Item::Text("\u{FFFD}".to_owned()),
            Item::Newline,
            Item::Text("a".to_owned())
        ]
    );
    assert!(decode(&[]).is_empty());
    assert!(tickets_of(&[]).is_empty());
}

#[test]
fn decode_survives_random_bytes() {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    // Bias towards command introducers and their parameters to reach every branch.
    const HOT: &[u8] = &[
        0x1B, 0x1D, 0x1C, 0x10, 0x04, 0x0A, 0x00, b'(', b'k', b'V', 49, 80,
    ];
    for round in 0..10_000 {
        let len = (next() % 96) as usize;
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                let r = next();
                if r % 3 == 0 {
                    HOT[(r >> 8) as usize % HOT.len()]
                } else {
                    (r >> 16) as u8
                }
            })
            .collect();
        let items = decode(&bytes);
        assert!(items.len() <= bytes.len(), "round {round}: {bytes:02x?}");
        let tickets = tickets_of(&items);
        let total: usize = tickets.iter().map(|t| t.items.len()).sum();
        assert_eq!(total, items.len(), "round {round}");
        let cuts = items
            .iter()
            .filter(|i| matches!(i, Item::Cut { .. }))
            .count();
        assert_eq!(tickets.iter().filter(|t| t.cut).count(), cuts);
    }
}
