//! The server's HTTP API and WebSocket connections, as the loadgen uses them.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An answer: the status and the body as JSON (`Null` when empty, a string when not JSON).
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

#[derive(Clone)]
pub(crate) struct Api {
    client: reqwest::Client,
    base: String,
}

impl Api {
    pub(crate) fn new(base: &str) -> Result<Self> {
        let client = reqwest::Client::builder()
            // Under the server's 10 s idle close, so a pooled connection is never reused just
            // as the server drops it (which would fail a POST that never reached it).
            .pool_idle_timeout(Duration::from_secs(4))
            .timeout(Duration::from_secs(60))
            .build()
            .context("HTTP client")?;
        Ok(Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The WebSocket address of `path`.
    pub(crate) fn ws_url(&self, path: &str) -> String {
        let base = if let Some(rest) = self.base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = self.base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            self.base.clone()
        };
        format!("{base}{path}")
    }

    pub(crate) async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
        idempotency_key: Option<&str>,
    ) -> Result<Answer, reqwest::Error> {
        let mut req = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Ok(Answer { status, body })
    }

    pub(crate) async fn get(&self, path: &str, token: &str) -> Result<Answer, reqwest::Error> {
        self.send(reqwest::Method::GET, path, token, None, None)
            .await
    }

    pub(crate) async fn post(
        &self,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> Result<Answer, reqwest::Error> {
        self.send(reqwest::Method::POST, path, token, body, None)
            .await
    }
}

/// Why a WebSocket did not open.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// 429 `too_many_sockets` (or `rate_limited`).
    Limited,
    /// Anything else, described.
    Other(String),
}

/// Client sockets keep small buffers: the loadgen holds thousands of them.
fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(4 << 20))
}

/// Opens a WebSocket to `url`.
pub(crate) async fn connect(url: &str) -> Result<Ws, ConnectError> {
    let request = url
        .into_client_request()
        .map_err(|e| ConnectError::Other(e.to_string()))?;
    match tokio::time::timeout(
        Duration::from_secs(30),
        tokio_tungstenite::connect_async_with_config(request, Some(client_config()), true),
    )
    .await
    {
        Err(_) => Err(ConnectError::Other("connect timed out".into())),
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(tokio_tungstenite::tungstenite::Error::Http(resp)))
            if resp.status().as_u16() == 429 =>
        {
            Err(ConnectError::Limited)
        }
        Ok(Err(e)) => Err(ConnectError::Other(e.to_string())),
    }
}
