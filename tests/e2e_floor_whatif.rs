//! The floor board's what-if panel and suggestions in headless Chromium (being written).

mod common;
