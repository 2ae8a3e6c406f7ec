//! The ticket layout: a print job in, ESC/POS bytes out, for 80 mm and 58 mm paper.
//!
//! Japanese printers need Shift_JIS and Kanji mode: the escpos crate encodes text with its
//! Shift_JIS encoder, and the Kanji commands it lacks (FS C 1, FS &, FS .) go in as raw bytes.
//! Characters Shift_JIS cannot hold are replaced by 〓 (the geta mark) before encoding, so a job
//! never fails on an unusual character and the gap stays visible.

use std::sync::{Arc, Mutex};

use escpos::driver::Driver;
use escpos::printer::Printer;
use escpos::utils::{
    Encoder, JustifyMode, Protocol, QRCodeCorrectionLevel, QRCodeModel, QRCodeOption,
};
use madoguchi_wire::PrintJob;

/// FS C 1: select the Shift_JIS code system.
pub const FS_SHIFT_JIS: &[u8] = &[0x1C, 0x43, 0x01];
/// FS &: Kanji mode on.
pub const FS_KANJI_ON: &[u8] = &[0x1C, 0x26];
/// FS .: Kanji mode off.
pub const FS_KANJI_OFF: &[u8] = &[0x1C, 0x2E];

/// Paper width.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum Width {
    /// 80 mm: 48 columns of Font A.
    #[serde(rename = "80")]
    Mm80,
    /// 58 mm: 32 columns of Font A.
    #[serde(rename = "58")]
    Mm58,
}

impl Width {
    pub fn columns(self) -> usize {
        match self {
            Width::Mm80 => 48,
            Width::Mm58 => 32,
        }
    }
}

impl std::str::FromStr for Width {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim_end_matches("mm") {
            "80" => Ok(Width::Mm80),
            "58" => Ok(Width::Mm58),
            _ => Err(format!("width must be 80 or 58, not {s:?}")),
        }
    }
}

/// Collects what the escpos printer writes.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Driver for Buffer {
    fn name(&self) -> String {
        "buffer".into()
    }
    fn write(&self, data: &[u8]) -> escpos::errors::Result<()> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(data);
        Ok(())
    }
    fn read(&self, _buf: &mut [u8]) -> escpos::errors::Result<usize> {
        Ok(0)
    }
    fn flush(&self) -> escpos::errors::Result<()> {
        Ok(())
    }
}

/// Replaces what a Japanese ESC/POS printer cannot print (and control characters) with a
/// visible 〓. The printers hold JIS X 0208 (Shift_JIS lead bytes 81–84, 88–9F, E0–EA), not the
/// vendor extensions of Windows-31J that the encoder would otherwise accept (髙, ①).
pub fn sjis_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                return '〓';
            }
            let mut buf = [0u8; 4];
            let (bytes, _, unmappable) = encoding_rs::SHIFT_JIS.encode(c.encode_utf8(&mut buf));
            let printable = !unmappable
                && match *bytes {
                    [_] => true,
                    [lead, _] => matches!(lead, 0x81..=0x84 | 0x88..=0x9F | 0xE0..=0xEA),
                    _ => false,
                };
            if printable {
                c
            } else {
                '〓'
            }
        })
        .collect()
}

/// Columns a text takes in Font A: 1 for ASCII and half-width katakana, 2 for the rest.
pub fn columns(text: &str) -> usize {
    text.chars()
        .map(|c| {
            if c.is_ascii() || ('\u{FF61}'..='\u{FF9F}').contains(&c) {
                1
            } else {
                2
            }
        })
        .sum()
}

/// Breaks a text into lines of at most `width` columns (at spaces where possible).
pub fn wrap(text: &str, width: usize, indent: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = String::new();
    for c in text.chars() {
        if columns(&line) + columns(&c.to_string()) > width {
            // Break at the last space if the line is Latin text.
            let cut = line.rfind(' ').filter(|&i| i > indent.len());
            match cut {
                Some(i) if c != ' ' => {
                    let rest = line[i + 1..].to_owned();
                    line.truncate(i);
                    lines.push(std::mem::take(&mut line));
                    line = format!("{indent}{rest}");
                }
                _ => {
                    lines.push(std::mem::take(&mut line));
                    line = indent.to_owned();
                }
            }
            if c == ' ' && line.trim().is_empty() {
                continue;
            }
        }
        line.push(c);
    }
    if !line.trim().is_empty() {
        lines.push(line);
    }
    lines
}

/// Minutes to print for a wait, rounded as the screens do: `None` (まもなく) below 3 minutes,
/// else to the nearest 5 minutes.
fn minutes(seconds: u64) -> Option<u64> {
    (seconds >= 180).then(|| ((seconds + 150) / 300 * 5).max(5))
}

/// Renders a job as the bytes of one ticket, ending with a cut.
pub fn render(job: &PrintJob, width: Width) -> Vec<u8> {
    render_inner(job, width).expect("rendering into memory does not fail")
}

fn render_inner(job: &PrintJob, width: Width) -> escpos::errors::Result<Vec<u8>> {
    let buffer = Buffer::default();
    let protocol = Protocol::new(Encoder::new(encoding_rs::SHIFT_JIS).allow_unencodable(true));
    let mut p = Printer::new(buffer.clone(), protocol, None);
    let cols = width.columns();
    let wide = width == Width::Mm80;
    let text = |s: &str| sjis_safe(s);
    let rule = "-".repeat(cols);

    p.init()?
        .custom(FS_SHIFT_JIS)?
        .custom(FS_KANJI_ON)?
        .justify(JustifyMode::CENTER)?;
    // Header: the site.
    p.bold(true)?
        .size(2, 2)?
        .writeln(&text(&job.site_name.ja))?
        .reset_size()?
        .bold(false)?
        .writeln(&text(&job.site_name.en))?
        .feed()?;
    if job.priority {
        p.reverse(true)?
            .writeln(&text(" 優先 / Priority "))?
            .reverse(false)?;
    }
    // The number, as large as the paper allows.
    p.writeln(&text("受付番号 / Your number"))?;
    let (w, h) = if wide { (6, 6) } else { (4, 4) };
    p.bold(true)?
        .size(w, h)?
        .writeln(&text(&job.number))?
        .reset_size()?
        .bold(false)?;
    p.writeln(&text(&job.queue_name.ja))?;
    if columns(&job.queue_name.en) <= cols {
        p.writeln(&text(&job.queue_name.en))?;
    }
    // What the resident came for: the visit plan.
    p.justify(JustifyMode::LEFT)?.writeln(&rule)?;
    match &job.life_event {
        Some(l) => p.writeln(&text(&format!("ご用件 / {}：{}", l.en, l.ja)))?,
        None => p.writeln(&text("ご用件 / Your procedures"))?,
    };
    for procedure in &job.procedures {
        for line in wrap(&text(&format!("・{}", procedure.ja)), cols, "  ") {
            p.writeln(&line)?;
        }
        if wide {
            for line in wrap(&text(&format!("  {}", procedure.en)), cols, "    ") {
                p.writeln(&line)?;
            }
        }
    }
    p.writeln(&rule)?;
    // The wait.
    if job.ahead == 0 {
        p.writeln(&text("まもなくお呼びします"))?
            .writeln("You will be called shortly.")?;
    } else {
        p.writeln(&text(&format!("お待ちの方 {}人", job.ahead)))?
            .writeln(&format!("{} ahead of you", job.ahead))?;
        match minutes(job.estimated_wait_s) {
            Some(m) => p
                .writeln(&text(&format!("目安の待ち時間 約{m}分")))?
                .writeln(&format!("Estimated wait: about {m} min"))?,
            None => p
                .writeln(&text("目安の待ち時間 まもなく"))?
                .writeln("Estimated wait: shortly")?,
        };
    }
    // The QR code to follow the wait on a phone.
    p.justify(JustifyMode::CENTER)?.feed()?.qrcode_option(
        &job.url,
        QRCodeOption::new(
            QRCodeModel::Model2,
            if wide { 6 } else { 5 },
            QRCodeCorrectionLevel::M,
        ),
    )?;
    p.writeln(&text("スマートフォンで呼出状況を確認できます"))?;
    if wide {
        p.writeln("Scan to follow your turn on your phone")?;
    }
    p.feed()?
        .writeln(&text(&format!("{}  {}", job.issued_local, job.dispenser)))?
        .writeln(&text("お呼びするまでお待ちください"))?
        .feeds(3)?
        .custom(FS_KANJI_OFF)?
        .partial_cut()?
        .print()?;
    let bytes = buffer.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(bytes)
}

/// A sample job for `print-test`.
pub fn sample_job() -> PrintJob {
    use madoguchi_wire::I18n;
    let i18n = |ja: &str, en: &str| I18n {
        ja: ja.into(),
        en: en.into(),
    };
    PrintJob {
        id: "print-test".into(),
        site: "chuo".into(),
        site_name: i18n("中央区役所", "Chuo Ward Office"),
        dispenser: "kiosk-1".into(),
        number: "123".into(),
        queue_name: i18n("ワンストップ窓口", "One-stop counter"),
        procedures: vec![
            i18n("住民異動届（転入）", "Moving-in notification"),
            i18n("児童手当", "Child allowance"),
            i18n("こども医療費助成", "Child medical expense subsidy"),
        ],
        life_event: Some(i18n("市外から転入", "Moving in")),
        priority: false,
        ahead: 3,
        estimated_wait_s: 1500,
        issued_at: chrono::Utc::now(),
        issued_local: chrono::Local::now().format("%Y-%m-%d %H:%M").to_string(),
        url: "http://127.0.0.1:8080/t/print-test".into(),
        lang: Some("ja".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unencodable_characters_are_replaced_visibly() {
        assert_eq!(sjis_safe("髙橋🎉①"), "〓橋〓〓");
        assert_eq!(sjis_safe("ｶﾀｶﾅ ＡＢＣ"), "ｶﾀｶﾅ ＡＢＣ");
        assert_eq!(sjis_safe("中央区役所 ABC"), "中央区役所 ABC");
        // The rendered ticket never holds a UTF-8 sequence or an HTML character reference.
        let mut job = sample_job();
        job.site_name.ja = "𠮷野🎉区役所".into();
        let bytes = render(&job, Width::Mm80);
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("&#"), "no numeric references");
    }

    #[test]
    fn the_ticket_selects_shift_jis_and_kanji_mode_and_ends_with_one_cut() {
        for width in [Width::Mm80, Width::Mm58] {
            let bytes = render(&sample_job(), width);
            let find = |needle: &[u8]| bytes.windows(needle.len()).position(|w| w == needle);
            let kanji_on = find(FS_KANJI_ON).expect("FS &");
            let first_kanji = find(&encoding_rs::SHIFT_JIS.encode("中央区役所").0).expect("site");
            assert!(find(FS_SHIFT_JIS).unwrap() < kanji_on && kanji_on < first_kanji);
            assert_eq!(
                bytes
                    .windows(3)
                    .filter(|w| *w == [0x1D, b'V', b'B'])
                    .count()
                    + bytes
                        .windows(3)
                        .filter(|w| *w == [0x1D, b'V', b'A'])
                        .count(),
                1
            );
            assert!(
                !bytes.windows(2).any(|w| w == [0x10, 0x04]),
                "no status request inside a job"
            );
        }
    }

    #[test]
    fn wrapping_respects_full_width_columns() {
        let lines = wrap(
            "・こども医療費助成こども医療費助成こども医療費助成",
            32,
            "  ",
        );
        assert!(lines.iter().all(|l| columns(l) <= 32), "{lines:?}");
        assert!(lines.len() >= 2);
        let lines = wrap("  Child medical expense subsidy application", 32, "    ");
        assert!(lines.iter().all(|l| columns(l) <= 32), "{lines:?}");
        assert!(lines[1].starts_with("    "), "{lines:?}");
    }
}
