//! The link to the printer: where the bytes go, and how the printer's state is read.
//!
//! Status uses ESC/POS real-time status (DLE EOT n), sent as exactly `10 04 n`: the escpos crate's
//! helper appends a NUL that a printer would take as data. Each answer is one byte with bits 1 and
//! 4 set and bits 0 and 7 clear.

use std::path::PathBuf;
use std::time::Duration;

use madoguchi_wire::PrinterState;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long the printer gets to connect or answer.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Where the printer is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// A network printer, usually on port 9100.
    Tcp(String),
    /// A device or plain file (`/dev/usb/lp0`, or a file for a dry run); no status can be read.
    File(PathBuf),
    #[cfg(feature = "usb")]
    Usb { vendor: u16, product: u16 },
    #[cfg(feature = "serial")]
    Serial { path: String, baud: u32 },
}

impl std::str::FromStr for Connection {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(addr) = s.strip_prefix("tcp://") {
            if !addr.contains(':') {
                return Ok(Connection::Tcp(format!("{addr}:9100")));
            }
            return Ok(Connection::Tcp(addr.to_owned()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            let path = path.strip_prefix("//").unwrap_or(path);
            if path.is_empty() {
                return Err("file: needs a path, e.g. file:/dev/usb/lp0".into());
            }
            return Ok(Connection::File(PathBuf::from(path)));
        }
        if let Some(ids) = s.strip_prefix("usb:") {
            #[cfg(feature = "usb")]
            {
                let (v, p) = ids
                    .split_once(':')
                    .ok_or("usb: needs VENDOR:PRODUCT in hex, e.g. usb:04b8:0202")?;
                let hex = |x: &str| u16::from_str_radix(x.trim_start_matches("0x"), 16);
                return Ok(Connection::Usb {
                    vendor: hex(v).map_err(|e| format!("usb vendor id: {e}"))?,
                    product: hex(p).map_err(|e| format!("usb product id: {e}"))?,
                });
            }
            #[cfg(not(feature = "usb"))]
            {
                let _ = ids;
                return Err("this build has no USB support: build with --features usb".into());
            }
        }
        if let Some(rest) = s.strip_prefix("serial:") {
            #[cfg(feature = "serial")]
            {
                let (path, baud) = match rest.rsplit_once(':') {
                    Some((p, b)) if b.chars().all(|c| c.is_ascii_digit()) => (
                        p.to_owned(),
                        b.parse().map_err(|e| format!("baud rate: {e}"))?,
                    ),
                    _ => (rest.to_owned(), 9600),
                };
                return Ok(Connection::Serial { path, baud });
            }
            #[cfg(not(feature = "serial"))]
            {
                let _ = rest;
                return Err(
                    "this build has no serial support: build with --features serial".into(),
                );
            }
        }
        Err(format!(
            "unknown printer {s:?}: use tcp://HOST:PORT, file:/dev/usb/lp0, usb:VID:PID or serial:/dev/ttyS0[:BAUD]"
        ))
    }
}

/// Decodes the answers to DLE EOT 1 (printer), 2 (offline cause) and 4 (roll paper sensor).
pub fn decode_status(printer: u8, offline: u8, paper: u8) -> Option<PrinterState> {
    let valid = |b: u8| b & 0x93 == 0x12;
    if !(valid(printer) && valid(offline) && valid(paper)) {
        return None;
    }
    Some(if offline & 0x04 != 0 {
        PrinterState::CoverOpen
    } else if paper & 0x60 == 0x60 || offline & 0x20 != 0 {
        PrinterState::PaperEnd
    } else if printer & 0x08 != 0 {
        PrinterState::Offline
    } else if paper & 0x0C == 0x0C {
        PrinterState::PaperNearEnd
    } else {
        PrinterState::Online
    })
}

/// An open or closed link to one printer.
pub struct Link {
    connection: Connection,
    /// Dry run: write to a file and always report the printer online.
    dry_run: bool,
    tcp: Option<TcpStream>,
}

impl Link {
    pub fn new(connection: Connection, dry_run: bool) -> Self {
        Self {
            connection,
            dry_run,
            tcp: None,
        }
    }

    pub fn describe(&self) -> String {
        match &self.connection {
            Connection::Tcp(a) => format!("tcp://{a}"),
            Connection::File(p) => format!("file:{}", p.display()),
            #[cfg(feature = "usb")]
            Connection::Usb { vendor, product } => format!("usb:{vendor:04x}:{product:04x}"),
            #[cfg(feature = "serial")]
            Connection::Serial { path, baud } => format!("serial:{path}:{baud}"),
        }
    }

    async fn tcp(&mut self, addr: &str) -> std::io::Result<&mut TcpStream> {
        if self.tcp.is_none() {
            let stream = tokio::time::timeout(TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
                })??;
            stream.set_nodelay(true)?;
            self.tcp = Some(stream);
        }
        Ok(self.tcp.as_mut().expect("just connected"))
    }

    /// Asks the printer how it is.
    pub async fn status(&mut self) -> PrinterState {
        if self.dry_run {
            return PrinterState::Online;
        }
        match self.connection.clone() {
            Connection::Tcp(addr) => match self.tcp_status(&addr).await {
                Ok(Some(state)) => state,
                Ok(None) => {
                    tracing::warn!(printer = %addr, "the printer's status answer makes no sense; reconnecting");
                    self.tcp = None;
                    PrinterState::Unreachable
                }
                Err(e) => {
                    tracing::debug!(printer = %addr, error = %e, "printer unreachable");
                    self.tcp = None;
                    PrinterState::Unreachable
                }
            },
            Connection::File(path) => {
                let writable = tokio::fs::OpenOptions::new()
                    .append(true)
                    .create(!path.starts_with("/dev"))
                    .open(&path)
                    .await
                    .is_ok();
                if writable {
                    PrinterState::Online
                } else {
                    PrinterState::Unreachable
                }
            }
            #[cfg(any(feature = "usb", feature = "serial"))]
            _ => match tokio::task::spawn_blocking({
                let c = self.connection.clone();
                move || blocking::status(&c)
            })
            .await
            {
                Ok(Some(s)) => s,
                _ => PrinterState::Unreachable,
            },
        }
    }

    async fn tcp_status(&mut self, addr: &str) -> std::io::Result<Option<PrinterState>> {
        let stream = self.tcp(addr).await?;
        let mut answers = [0u8; 3];
        for (i, n) in [1u8, 2, 4].into_iter().enumerate() {
            stream.write_all(&[0x10, 0x04, n]).await?;
            let mut byte = [0u8; 1];
            tokio::time::timeout(TIMEOUT, stream.read_exact(&mut byte))
                .await
                .map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::TimedOut, "no status answer")
                })??;
            answers[i] = byte[0];
        }
        Ok(decode_status(answers[0], answers[1], answers[2]))
    }

    /// Sends a job's bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self.connection.clone() {
            Connection::Tcp(addr) => {
                let result = async {
                    let stream = self.tcp(&addr).await?;
                    stream.write_all(bytes).await?;
                    stream.flush().await
                }
                .await;
                if result.is_err() {
                    self.tcp = None;
                }
                result
            }
            Connection::File(path) => {
                let mut file = tokio::fs::OpenOptions::new()
                    .append(true)
                    .create(!path.starts_with("/dev"))
                    .open(&path)
                    .await?;
                file.write_all(bytes).await?;
                file.flush().await?;
                file.sync_data().await.or_else(|e| {
                    // Character devices cannot sync; that is fine.
                    if path.starts_with("/dev") {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
            }
            #[cfg(any(feature = "usb", feature = "serial"))]
            _ => {
                let c = self.connection.clone();
                let bytes = bytes.to_vec();
                tokio::task::spawn_blocking(move || blocking::send(&c, &bytes))
                    .await
                    .map_err(std::io::Error::other)?
            }
        }
    }
}

/// USB and serial printers through the escpos crate's drivers (blocking I/O).
#[cfg(any(feature = "usb", feature = "serial"))]
mod blocking {
    use escpos::driver::Driver;

    use super::{decode_status, Connection};
    use madoguchi_wire::PrinterState;

    fn open(c: &Connection) -> escpos::errors::Result<Box<dyn Driver>> {
        match c {
            #[cfg(feature = "usb")]
            Connection::Usb { vendor, product } => Ok(Box::new(
                escpos::driver::NativeUsbDriver::open(*vendor, *product)?,
            )),
            #[cfg(feature = "serial")]
            Connection::Serial { path, baud } => Ok(Box::new(
                escpos::driver::SerialPortDriver::open(path, *baud, None)?,
            )),
            _ => Err(escpos::errors::PrinterError::Input(
                "not a blocking printer".into(),
            )),
        }
    }

    pub(super) fn status(c: &Connection) -> Option<PrinterState> {
        let driver = open(c).ok()?;
        let mut answers = [0u8; 3];
        for (i, n) in [1u8, 2, 4].into_iter().enumerate() {
            driver.write(&[0x10, 0x04, n]).ok()?;
            driver.flush().ok()?;
            let mut byte = [0u8; 1];
            if driver.read(&mut byte).ok()? != 1 {
                return None;
            }
            answers[i] = byte[0];
        }
        decode_status(answers[0], answers[1], answers[2])
    }

    pub(super) fn send(c: &Connection, bytes: &[u8]) -> std::io::Result<()> {
        let driver = open(c).map_err(|e| std::io::Error::other(e.to_string()))?;
        driver
            .write(bytes)
            .and_then(|_| driver.flush())
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bytes_decode_as_the_epson_spec_says() {
        use PrinterState::*;
        assert_eq!(decode_status(0x12, 0x12, 0x12), Some(Online));
        assert_eq!(decode_status(0x12, 0x12, 0x1E), Some(PaperNearEnd));
        assert_eq!(decode_status(0x1A, 0x32, 0x7E), Some(PaperEnd));
        assert_eq!(decode_status(0x1A, 0x56, 0x12), Some(CoverOpen));
        assert_eq!(decode_status(0x1A, 0x12, 0x12), Some(Offline));
        assert_eq!(decode_status(0x00, 0x12, 0x12), None, "not a status byte");
    }

    #[test]
    fn connections_parse() {
        assert_eq!(
            "tcp://10.0.0.5:9100".parse::<Connection>(),
            Ok(Connection::Tcp("10.0.0.5:9100".into()))
        );
        assert_eq!(
            "tcp://printer".parse::<Connection>(),
            Ok(Connection::Tcp("printer:9100".into()))
        );
        assert_eq!(
            "file:/dev/usb/lp0".parse::<Connection>(),
            Ok(Connection::File("/dev/usb/lp0".into()))
        );
        assert!("lpt1".parse::<Connection>().is_err());
    }
}
