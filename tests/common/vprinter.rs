//! A virtual ESC/POS thermal printer (Epson TM-T88 class, Japanese model) for tests.
//!
//! [`VirtualPrinter::start`] listens on `127.0.0.1:0` like a port-9100 raw printer. Every byte a
//! client sends is appended, in order, to one shared log (across connections), except real-time
//! status requests `DLE EOT n` (n = 1..=4), which are answered with one status byte instead.
//! [`decode`] turns the log into [`Item`]s and [`tickets_of`] groups them into [`Ticket`]s (one per
//! paper cut).
//!
//! Self-contained: include it with `#[path = "common/vprinter.rs"] mod vprinter;` or as a
//! submodule of `tests/common`.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use encoding_rs::SHIFT_JIS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

const LF: u8 = 0x0A;
const DLE: u8 = 0x10;
const EOT: u8 = 0x04;
const ESC: u8 = 0x1B;
const FS: u8 = 0x1C;
const GS: u8 = 0x1D;

// ------------------------------------------------------------------------------------------------
// Virtual printer
// ------------------------------------------------------------------------------------------------

/// The printer condition reported by real-time status requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Ready to print.
    #[default]
    Online,
    /// Roll paper near-end sensor triggered; still prints.
    PaperNearEnd,
    /// Out of paper: offline, does not print.
    PaperEnd,
    /// Cover open: offline, does not print.
    CoverOpen,
    /// Offline for another reason (e.g. paper being fed by the button); does not print.
    Offline,
}

impl Status {
    /// Whether a printer in this state prints what it receives.
    pub fn ready(self) -> bool {
        matches!(self, Status::Online | Status::PaperNearEnd)
    }

    /// The single byte a TM-T88 answers to `DLE EOT n` (fixed bits `0x12` always set).
    /// Unknown `n` are answered like n = 3 (no error bits).
    pub fn answer(self, n: u8) -> u8 {
        let offline = !self.ready();
        let cover = self == Status::CoverOpen;
        let paper_end = self == Status::PaperEnd;
        let near_end = matches!(self, Status::PaperNearEnd | Status::PaperEnd);
        let bit = |yes: bool, mask: u8| if yes { mask } else { 0 };
        let byte = match n {
            // Printer status: bit 3 = offline.
            1 => bit(offline, 0x08),
            // Offline cause: bit 2 = cover open, bit 5 = stopped by paper end, bit 6 = error.
            2 => bit(cover, 0x04 | 0x40) | bit(paper_end, 0x20),
            // Roll paper sensor: bits 2-3 = near end, bits 5-6 = paper end. At paper end the
            // near-end sensor sees no paper either, as on a real printer (0x7E).
            4 => bit(near_end, 0x0C) | bit(paper_end, 0x60),
            // Error cause (n = 3): no recoverable/autocutter/unrecoverable errors.
            _ => 0,
        };
        0x12 | byte
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Gate {
    Open,
    Unreachable,
    Shutdown,
}

#[derive(Default)]
struct State {
    log: Vec<u8>,
    status: Status,
    status_requests: usize,
    stray_nuls: usize,
    bytes_while_not_ready: usize,
    connections: usize,
    refused: usize,
    cut_times: Vec<Instant>,
    /// Offset in `log` just past the last cut seen (cuts are scanned incrementally from here).
    scanned: usize,
}

struct Shared {
    state: Mutex<State>,
    gate: watch::Sender<Gate>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A virtual port-9100 ESC/POS printer. Dropping it stops the listener and closes connections.
pub struct VirtualPrinter {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept_task: JoinHandle<()>,
}

impl VirtualPrinter {
    /// Binds `127.0.0.1:0` and starts serving (must be called inside a tokio runtime).
    pub async fn start() -> VirtualPrinter {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("virtual printer: bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("virtual printer: local addr");
        let (gate, _) = watch::channel(Gate::Open);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            gate,
        });
        let accept_task = tokio::spawn(accept_loop(listener, shared.clone()));
        VirtualPrinter {
            addr,
            shared,
            accept_task,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connection string for the agent's configuration: `tcp://127.0.0.1:PORT`.
    pub fn conn(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Sets the condition reported from the next status request on; while not
    /// [`Status::ready`], received bytes are counted in [`Self::bytes_while_not_ready`].
    pub fn set_status(&self, s: Status) {
        self.shared.lock().status = s;
    }

    /// The current condition.
    pub fn status(&self) -> Status {
        self.shared.lock().status
    }

    /// `false`: reset all open connections now and reset new ones right after accepting them.
    /// `true`: serve again.
    pub fn set_reachable(&self, yes: bool) {
        let gate = if yes { Gate::Open } else { Gate::Unreachable };
        self.shared.gate.send_replace(gate);
    }

    /// Everything received (across connections, in arrival order), minus answered status
    /// requests and stray NULs after them.
    pub fn bytes(&self) -> Vec<u8> {
        self.shared.lock().log.clone()
    }

    /// The decoded log.
    pub fn items(&self) -> Vec<Item> {
        decode(&self.bytes())
    }

    /// The decoded log split into tickets at each cut (a last ticket without a cut may follow).
    pub fn tickets(&self) -> Vec<Ticket> {
        tickets_of(&self.items())
    }

    /// Tickets that ended with a cut.
    pub fn cut_tickets(&self) -> Vec<Ticket> {
        self.tickets().into_iter().filter(|t| t.cut).collect()
    }

    /// How many `DLE EOT n` (n = 1..=4) requests were answered.
    pub fn status_requests(&self) -> usize {
        self.shared.lock().status_requests
    }

    /// How many single 0x00 bytes directly following a status request were dropped (the escpos
    /// crate's `real_time_status` sends `10 04 n 00`).
    pub fn stray_nuls(&self) -> usize {
        self.shared.lock().stray_nuls
    }

    /// How many logged bytes arrived while the status was PaperEnd, CoverOpen or Offline.
    pub fn bytes_while_not_ready(&self) -> usize {
        self.shared.lock().bytes_while_not_ready
    }

    /// Connections served so far (not counting those reset while unreachable).
    pub fn connections(&self) -> usize {
        self.shared.lock().connections
    }

    /// Connections accepted and reset at once while unreachable.
    pub fn refused(&self) -> usize {
        self.shared.lock().refused
    }

    /// The instant the final byte of each cut command arrived, in order.
    pub fn cut_times(&self) -> Vec<Instant> {
        self.shared.lock().cut_times.clone()
    }

    /// Forgets everything received so far (log, counters, cut times); status and reachability
    /// are kept.
    pub fn clear(&self) {
        let mut st = self.shared.lock();
        let status = st.status;
        let connections = st.connections;
        *st = State {
            status,
            connections,
            ..State::default()
        };
    }

    /// Waits until at least `n` tickets ended with a cut and returns those; panics after
    /// `timeout` with what was received.
    pub async fn wait_for_tickets(&self, n: usize, timeout: Duration) -> Vec<Ticket> {
        let deadline = Instant::now() + timeout;
        loop {
            let tickets = self.cut_tickets();
            if tickets.len() >= n {
                return tickets;
            }
            if Instant::now() >= deadline {
                panic!(
                    "virtual printer: expected {n} cut ticket(s) within {timeout:?}, got {}; \
                     items: {:?}",
                    tickets.len(),
                    self.items()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Polls `check` every few milliseconds until it is true; panics with `what` after `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, check: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            if Instant::now() >= deadline {
                panic!(
                    "virtual printer: timed out after {timeout:?} waiting for {what}; items: {:?}",
                    self.items()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for VirtualPrinter {
    fn drop(&mut self) {
        self.accept_task.abort();
        self.shared.gate.send_replace(Gate::Shutdown);
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        match *shared.gate.borrow() {
            Gate::Open => {}
            Gate::Unreachable => {
                shared.lock().refused += 1;
                reset(stream);
                continue;
            }
            Gate::Shutdown => return,
        }
        shared.lock().connections += 1;
        let gate = shared.gate.subscribe();
        tokio::spawn(serve(stream, shared.clone(), gate));
    }
}

/// Closes with RST so the client's next read or write fails at once.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// Per-connection parser state for real-time requests split across reads.
#[derive(Default)]
struct ConnState {
    /// A held-back prefix of `DLE EOT` (0, 1 or 2 bytes).
    pending: Vec<u8>,
    /// The previous byte completed a status request (a following 0x00 is dropped).
    after_status: bool,
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>, mut gate: watch::Receiver<Gate>) {
    let mut conn = ConnState::default();
    let mut buf = vec![0u8; 8192];
    loop {
        if *gate.borrow_and_update() != Gate::Open {
            reset(stream);
            return;
        }
        let n = tokio::select! {
            r = stream.read(&mut buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            },
            changed = gate.changed() => {
                if changed.is_err() {
                    break;
                }
                continue;
            }
        };
        let now = Instant::now();
        let replies = receive(&shared, &mut conn, &buf[..n], now);
        if !replies.is_empty() && stream.write_all(&replies).await.is_err() {
            break;
        }
    }
    // Connection closed by the client: a held-back partial DLE EOT was ordinary data.
    if !conn.pending.is_empty() {
        let mut st = shared.lock();
        let pending = std::mem::take(&mut conn.pending);
        for b in pending {
            log_byte(&mut st, b);
        }
        scan_cuts(&mut st, Instant::now());
    }
}

fn log_byte(st: &mut State, b: u8) {
    st.log.push(b);
    if !st.status.ready() {
        st.bytes_while_not_ready += 1;
    }
}

/// Logs `data`, answering status requests; returns the bytes to send back.
fn receive(shared: &Shared, conn: &mut ConnState, data: &[u8], now: Instant) -> Vec<u8> {
    let mut replies = Vec::new();
    let mut st = shared.lock();
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if conn.after_status {
            conn.after_status = false;
            if b == 0 {
                st.stray_nuls += 1;
                i += 1;
                continue;
            }
        }
        match conn.pending.len() {
            0 if b == DLE => conn.pending.push(b),
            0 => log_byte(&mut st, b),
            1 if b == EOT => conn.pending.push(b),
            2 if (1..=4).contains(&b) => {
                conn.pending.clear();
                st.status_requests += 1;
                replies.push(st.status.answer(b));
                conn.after_status = true;
            }
            _ => {
                // Not a status request after all: the held-back bytes are data; look at `b`
                // again with nothing pending.
                let pending = std::mem::take(&mut conn.pending);
                for p in pending {
                    log_byte(&mut st, p);
                }
                continue;
            }
        }
        i += 1;
    }
    scan_cuts(&mut st, now);
    replies
}

/// Records the arrival time of cuts completed since the last scan.
fn scan_cuts(st: &mut State, now: Instant) {
    let start = st.scanned;
    let mut last_cut_end = None;
    for (item, end, complete) in decode_spans(&st.log[start..]) {
        if complete && matches!(item, Item::Cut { .. }) {
            st.cut_times.push(now);
            last_cut_end = Some(start + end);
        }
    }
    if let Some(end) = last_cut_end {
        st.scanned = end;
    }
}

// ------------------------------------------------------------------------------------------------
// Decoder
// ------------------------------------------------------------------------------------------------

/// One decoded ESC/POS command or text run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// ESC @
    Init,
    /// FS &
    KanjiOn,
    /// FS .
    KanjiOff,
    /// FS C n
    KanjiCode(u8),
    /// A run of printable bytes, decoded as Shift_JIS.
    Text(String),
    /// LF
    Newline,
    /// ESC d n
    Feed(u8),
    /// ESC a n
    Align(u8),
    /// GS ! n (1-based magnification).
    Size { width: u8, height: u8 },
    /// ESC E n
    Bold(bool),
    /// ESC - n
    Underline(u8),
    /// ESC M n
    Font(u8),
    /// ESC 2 (None) / ESC 3 n
    LineSpacing(Option<u8>),
    /// ESC t n
    CodePage(u8),
    /// GS ( k pL pH 49 80 48 data
    QrStore(String),
    /// GS ( k 3 0 49 81 48
    QrPrint,
    /// Other GS ( k .. 49 fn functions (65 model, 67 size, 69 correction level): the bytes after fn.
    QrSetting { fn_code: u8, value: Vec<u8> },
    /// GS V m [n] (also ESC i / ESC m, partial).
    Cut { partial: bool },
    /// Anything else, with a best-effort length (a truncated command holds the rest of the input).
    Unknown(Vec<u8>),
}

/// Decodes an ESC/POS byte stream. Never panics; always makes progress.
pub fn decode(bytes: &[u8]) -> Vec<Item> {
    decode_spans(bytes)
        .into_iter()
        .map(|(item, _, _)| item)
        .collect()
}

/// Items with the offset just past each one and whether it was complete (not cut short by the
/// end of the input).
fn decode_spans(bytes: &[u8]) -> Vec<(Item, usize, bool)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let (item, len, complete) = parse_one(&bytes[pos..]);
        let len = len.clamp(1, bytes.len() - pos);
        pos += len;
        out.push((item, pos, complete));
    }
    out
}

/// Total length `len` of the command at the start of `b`, built by `f` if all there.
fn fixed(b: &[u8], len: usize, f: impl FnOnce(&[u8]) -> Item) -> (Item, usize, bool) {
    if b.len() < len {
        (Item::Unknown(b.to_vec()), b.len(), false)
    } else {
        (f(&b[..len]), len, true)
    }
}

fn unknown(b: &[u8], len: usize) -> (Item, usize, bool) {
    fixed(b, len, |c| Item::Unknown(c.to_vec()))
}

fn le16(lo: u8, hi: u8) -> usize {
    lo as usize | (hi as usize) << 8
}

fn parse_one(b: &[u8]) -> (Item, usize, bool) {
    let first = b[0];
    if first >= 0x20 {
        // Shift_JIS trail bytes are >= 0x40, so a run never ends inside a two-byte character.
        let end = b.iter().position(|&x| x < 0x20).unwrap_or(b.len());
        let (text, _) = SHIFT_JIS.decode_without_bom_handling(&b[..end]);
        return (Item::Text(text.into_owned()), end, true);
    }
    match first {
        LF => (Item::Newline, 1, true),
        ESC => parse_esc(b),
        GS => parse_gs(b),
        FS => parse_fs(b),
        DLE => parse_dle(b),
        _ => (Item::Unknown(vec![first]), 1, true),
    }
}

fn parse_esc(b: &[u8]) -> (Item, usize, bool) {
    let Some(&c) = b.get(1) else {
        return unknown(b, 2);
    };
    match c {
        b'@' => (Item::Init, 2, true),
        b'd' => fixed(b, 3, |c| Item::Feed(c[2])),
        b'a' => fixed(b, 3, |c| Item::Align(c[2])),
        b'E' => fixed(b, 3, |c| Item::Bold(c[2] & 1 == 1)),
        b'-' => fixed(b, 3, |c| Item::Underline(c[2])),
        b'M' => fixed(b, 3, |c| Item::Font(c[2])),
        b'2' => (Item::LineSpacing(None), 2, true),
        b'3' => fixed(b, 3, |c| Item::LineSpacing(Some(c[2]))),
        b't' => fixed(b, 3, |c| Item::CodePage(c[2])),
        b'i' | b'm' => (Item::Cut { partial: true }, 2, true),
        // ESC c 3 n / ESC c 4 n / ESC c 5 n / ESC p m t1 t2 / ESC $ / ESC \ / ESC W.
        b'c' => unknown(b, 4),
        b'p' => unknown(b, 5),
        b'$' | b'\\' => unknown(b, 4),
        b'W' => unknown(b, 10),
        // ESC * m nL nH d1..dk: bit image.
        b'*' => {
            if b.len() < 5 {
                return unknown(b, 5);
            }
            let per_column = if b[2] <= 1 { 1 } else { 3 };
            unknown(b, 5usize.saturating_add(le16(b[3], b[4]) * per_column))
        }
        // ESC D n1 .. nk NUL: horizontal tabs.
        b'D' => match b[2..].iter().take(33).position(|&x| x == 0) {
            Some(p) => unknown(b, 2 + p + 1),
            None if b.len() < 2 + 33 => unknown(b, usize::MAX),
            None => unknown(b, 2),
        },
        // ESC & y c1 c2 [x d1..d(y*x)] * (c2-c1+1): user-defined characters.
        b'&' => {
            if b.len() < 5 {
                return unknown(b, 5);
            }
            let y = b[2] as usize;
            let mut len = 5usize;
            for _ in b[3]..=b[4].max(b[3]) {
                let Some(&x) = b.get(len) else {
                    return unknown(b, usize::MAX);
                };
                len = len.saturating_add(1 + y * x as usize);
            }
            unknown(b, len)
        }
        // ESC ( x pL pH ...
        b'(' => {
            if b.len() < 5 {
                return unknown(b, 5);
            }
            unknown(b, 5 + le16(b[3], b[4]))
        }
        // One-parameter commands.
        b' ' | b'!' | b'%' | b'=' | b'?' | b'G' | b'J' | b'K' | b'R' | b'T' | b'U' | b'V'
        | b'e' | b'r' | b'{' | b'u' | b'v' => unknown(b, 3),
        _ => unknown(b, 2),
    }
}

fn parse_gs(b: &[u8]) -> (Item, usize, bool) {
    let Some(&c) = b.get(1) else {
        return unknown(b, 2);
    };
    match c {
        b'!' => fixed(b, 3, |c| Item::Size {
            width: (c[2] >> 4) + 1,
            height: (c[2] & 15) + 1,
        }),
        b'V' => {
            let Some(&m) = b.get(2) else {
                return unknown(b, 3);
            };
            match m {
                0 | 48 => (Item::Cut { partial: false }, 3, true),
                1 | 49 => (Item::Cut { partial: true }, 3, true),
                65 | 97 | 103 => fixed(b, 4, |_| Item::Cut { partial: false }),
                66 | 98 | 104 => fixed(b, 4, |_| Item::Cut { partial: true }),
                _ => unknown(b, 3),
            }
        }
        b'(' => {
            if b.len() < 5 {
                return unknown(b, 5);
            }
            let len = le16(b[3], b[4]);
            let total = 5 + len;
            if b.len() < total {
                return unknown(b, total);
            }
            let cmd = &b[..total];
            if b[2] != b'k' || len < 2 || cmd[5] != 49 {
                return (Item::Unknown(cmd.to_vec()), total, true);
            }
            let item = match cmd[6] {
                80 if len >= 3 => Item::QrStore(payload(&cmd[8..])),
                81 => Item::QrPrint,
                fn_code => Item::QrSetting {
                    fn_code,
                    value: cmd[7..].to_vec(),
                },
            };
            (item, total, true)
        }
        // GS 8 L p1 p2 p3 p4 ...: graphics with a 32-bit length.
        b'8' => {
            if b.len() < 7 {
                return unknown(b, 7);
            }
            let len = u32::from_le_bytes([b[3], b[4], b[5], b[6]]) as usize;
            unknown(b, 7usize.saturating_add(len))
        }
        // GS k m d1..dk NUL (m <= 6) / GS k m n d1..dn (m >= 65): barcode.
        b'k' => {
            let Some(&m) = b.get(2) else {
                return unknown(b, 3);
            };
            if m <= 6 {
                match b[3..].iter().position(|&x| x == 0) {
                    Some(p) => unknown(b, 3 + p + 1),
                    None => unknown(b, usize::MAX),
                }
            } else if b.len() < 4 {
                unknown(b, 4)
            } else {
                unknown(b, 4 + b[3] as usize)
            }
        }
        // GS v 0 m xL xH yL yH d...: raster image.
        b'v' => {
            if b.len() < 8 {
                return unknown(b, 8);
            }
            let size = le16(b[4], b[5]).saturating_mul(le16(b[6], b[7]));
            unknown(b, 8usize.saturating_add(size))
        }
        // GS * x y d...: downloaded bit image.
        b'*' => {
            if b.len() < 4 {
                return unknown(b, 4);
            }
            unknown(b, 4 + b[2] as usize * b[3] as usize * 8)
        }
        b':' | b'c' => unknown(b, 2),
        b'$' | b'\\' | b'L' | b'W' | b'P' => unknown(b, 4),
        b'^' | b'g' => unknown(b, 5),
        _ => unknown(b, 3),
    }
}

fn parse_fs(b: &[u8]) -> (Item, usize, bool) {
    let Some(&c) = b.get(1) else {
        return unknown(b, 2);
    };
    match c {
        b'&' => (Item::KanjiOn, 2, true),
        b'.' => (Item::KanjiOff, 2, true),
        b'C' => fixed(b, 3, |c| Item::KanjiCode(c[2])),
        b'!' | b'-' | b'W' => unknown(b, 3),
        b'S' | b'p' | b'?' => unknown(b, 4),
        // FS 2 c1 c2 d1..d72: user-defined kanji.
        b'2' => unknown(b, 4 + 72),
        b'(' => {
            if b.len() < 5 {
                return unknown(b, 5);
            }
            unknown(b, 5 + le16(b[3], b[4]))
        }
        _ => unknown(b, 2),
    }
}

fn parse_dle(b: &[u8]) -> (Item, usize, bool) {
    let Some(&c) = b.get(1) else {
        return unknown(b, 2);
    };
    match c {
        EOT => match b.get(2) {
            Some(7 | 8 | 18) => unknown(b, 4),
            _ => unknown(b, 3),
        },
        // DLE ENQ n
        0x05 => unknown(b, 3),
        // DLE DC4 fn ...
        0x14 => match b.get(2) {
            Some(7) => unknown(b, 4),
            Some(8) => unknown(b, 10),
            _ => unknown(b, 5),
        },
        _ => unknown(b, 2),
    }
}

/// QR payload bytes as text: UTF-8 if valid, else Shift_JIS.
fn payload(data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(s) => s.to_owned(),
        Err(_) => SHIFT_JIS.decode_without_bom_handling(data).0.into_owned(),
    }
}

// ------------------------------------------------------------------------------------------------
// Tickets
// ------------------------------------------------------------------------------------------------

/// What was printed between two cuts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ticket {
    /// Printed text lines (trailing whitespace trimmed, empty lines skipped).
    pub lines: Vec<String>,
    /// Text printed at a character size of at least 3×3 (e.g. the ticket number), trimmed.
    pub big: Vec<String>,
    /// QR code payloads stored.
    pub qr: Vec<String>,
    /// Whether the ticket ended with a cut.
    pub cut: bool,
    /// Whether FS & (kanji mode on) was sent in this ticket.
    pub kanji_on: bool,
    /// The last FS C n (kanji code system; 1 = Shift_JIS) sent in this ticket.
    pub kanji_code: Option<u8>,
    /// All decoded items of this ticket, including its cut.
    pub items: Vec<Item>,
}

impl Ticket {
    /// The lines joined with `\n`.
    pub fn text(&self) -> String {
        self.lines.join("\n")
    }

    /// Whether the printed text (lines joined with `\n`) contains `s`.
    pub fn contains(&self, s: &str) -> bool {
        self.text().contains(s)
    }
}

/// Splits decoded items into tickets at each cut; trailing items without a cut form a last
/// ticket with `cut == false`. Character size carries over cuts (only ESC @ resets it); ESC @
/// also discards an unprinted partial line, as on a real printer.
pub fn tickets_of(items: &[Item]) -> Vec<Ticket> {
    struct Builder {
        ticket: Ticket,
        line: String,
        big: String,
        width: u8,
        height: u8,
    }
    impl Builder {
        fn is_big(&self) -> bool {
            self.width >= 3 && self.height >= 3
        }
        fn flush_line(&mut self) {
            let line = std::mem::take(&mut self.line);
            let line = line.trim_end();
            if !line.is_empty() {
                self.ticket.lines.push(line.to_owned());
            }
        }
        fn flush_big(&mut self) {
            let big = std::mem::take(&mut self.big);
            let big = big.trim();
            if !big.is_empty() {
                self.ticket.big.push(big.to_owned());
            }
        }
    }

    let mut out = Vec::new();
    let mut b = Builder {
        ticket: Ticket::default(),
        line: String::new(),
        big: String::new(),
        width: 1,
        height: 1,
    };
    for item in items {
        b.ticket.items.push(item.clone());
        match item {
            Item::Text(s) => {
                b.line.push_str(s);
                if b.is_big() {
                    b.big.push_str(s);
                }
            }
            Item::Newline | Item::Feed(_) => {
                b.flush_line();
                b.flush_big();
            }
            Item::Size { width, height } => {
                b.width = *width;
                b.height = *height;
                if !b.is_big() {
                    b.flush_big();
                }
            }
            Item::Init => {
                b.line.clear();
                b.big.clear();
                b.width = 1;
                b.height = 1;
            }
            Item::KanjiOn => b.ticket.kanji_on = true,
            Item::KanjiCode(n) => b.ticket.kanji_code = Some(*n),
            Item::QrStore(s) => b.ticket.qr.push(s.clone()),
            Item::Cut { .. } => {
                b.flush_line();
                b.flush_big();
                b.ticket.cut = true;
                out.push(std::mem::take(&mut b.ticket));
            }
            _ => {}
        }
    }
    if !b.ticket.items.is_empty() {
        b.flush_line();
        b.flush_big();
        out.push(b.ticket);
    }
    out
}
