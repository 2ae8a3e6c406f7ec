//! madoguchi printer agent: receives print jobs from the madoguchi server over a WebSocket and
//! prints them on an ESC/POS thermal printer, exactly once.
//!
//! Layout, following the flow of data: [`agent`] (server connection → worker) → [`ticket`] (job →
//! ESC/POS bytes) → [`printer`] (bytes → printer, printer state back); [`journal`] remembers what
//! was printed.

pub mod agent;
pub mod journal;
pub mod printer;
pub mod ticket;
