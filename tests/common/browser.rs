//! A small WebDriver client for headless Chromium (Debian's `chromium` and `chromium-driver`),
//! enough for the screen tests: open a page, find and click elements, type, run a script, wait
//! for a condition, enter a frame, take a screenshot, read the console (where Chromium reports
//! every Content-Security-Policy violation).
//!
//! Without Chromium the screen tests skip, unless `CI` is set: under CI every test runs.

#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// True when the browser can run; false (with a note) when the test should skip. Panics under CI.
pub fn available() -> bool {
    let present = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but {CHROMIUM} or {CHROMEDRIVER} is missing: .ci/run installs chromium and chromium-driver"
        );
        eprintln!("skipping: headless Chromium is not installed (apt-get install chromium chromium-driver)");
    }
    present
}

/// Where screenshots go: `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and one headless Chromium window of the given size.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        use std::os::unix::process::CommandExt;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // Its own process group, so Chromium goes with it when the test ends.
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Keep the console: Content-Security-Policy violations are reported there.
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--disable-quic", "--autoplay-policy=no-user-gesture-required",
                    "--lang=ja", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let reply: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .expect("new session")
            .json()
            .await
            .unwrap();
        let session = reply["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {reply}"))
            .to_owned();
        let browser = Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        };
        // The viewport, not the outer window, should have the asked size.
        browser
            .cmd(
                "POST",
                "/window/rect",
                json!({"width": width, "height": height}),
            )
            .await;
        browser
    }

    async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        let url = format!("{}/session/{}{}", self.base, self.session, path);
        let req = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let reply: Value = req.send().await.expect("webdriver").json().await.unwrap();
        if let Some(err) = reply["value"].get("error") {
            panic!(
                "webdriver {method} {path}: {err}: {}",
                reply["value"]["message"]
            );
        }
        reply["value"].clone()
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    /// Runs a script (`return …` to get a value back).
    pub async fn exec(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Runs `script` in every page opened from now on, before the page's own scripts (Chromium's
    /// `Page.addScriptToEvaluateOnNewDocument`): to take a browser feature away, for instance.
    pub async fn before_each_page(&self, script: &str) {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": script}}),
        )
        .await;
    }

    /// Polls a JavaScript expression until it is truthy; returns its value.
    pub async fn wait(&self, what: &str, expr: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let script = format!("try {{ return ({expr}); }} catch (e) {{ return null; }}");
        loop {
            let v = self.exec(&script).await;
            let truthy = match &v {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return v;
            }
            if Instant::now() > deadline {
                let html = self
                    .exec("return document.body ? document.body.innerText.slice(0, 2000) : ''")
                    .await;
                panic!("timed out waiting for {what} ({expr}); page text:\n{html}");
            }
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element for {css}: {v}"))
            .to_owned()
    }

    /// Waits until `css` matches a visible element, then clicks it as a user would.
    pub async fn click(&self, css: &str) {
        let sel = serde_json::to_string(css).unwrap();
        self.wait(
            &format!("{css} to be clickable"),
            &format!("(() => {{ const e = document.querySelector({sel}); return e && !e.disabled && e.offsetParent !== null; }})()"),
            Duration::from_secs(15),
        )
        .await;
        let id = self.element(css).await;
        self.cmd("POST", &format!("/element/{id}/click"), json!({}))
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    pub async fn text(&self, css: &str) -> String {
        let sel = serde_json::to_string(css).unwrap();
        self.exec(&format!(
            "const e = document.querySelector({sel}); return e ? e.textContent.trim() : null;"
        ))
        .await
        .as_str()
        .unwrap_or("")
        .to_owned()
    }

    /// Runs the following commands in the frame `css` (an `<iframe>` of the current page).
    pub async fn enter_frame(&self, css: &str) {
        let id = self.element(css).await;
        self.cmd("POST", "/frame", json!({"id": {ELEMENT: id}}))
            .await;
    }

    /// Back from a frame to the page around it.
    pub async fn leave_frame(&self) {
        self.cmd("POST", "/frame/parent", json!({})).await;
    }

    /// The console messages of every page since the last call (reading empties the log).
    pub async fn console(&self) -> Vec<String> {
        let entries = self
            .cmd("POST", "/se/log", json!({"type": "browser"}))
            .await;
        entries
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|e| {
                        format!(
                            "{}: {}",
                            e["level"].as_str().unwrap_or(""),
                            e["message"].as_str().unwrap_or("")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Content-Security-Policy violations reported on the console since the last read of it:
    /// Chromium reports each one there ("Refused to execute inline script because it violates the
    /// following Content Security Policy directive…", "Refused to connect to…", "Refused to
    /// frame…"), and invalid policies too.
    pub async fn csp_violations(&self) -> Vec<String> {
        self.console()
            .await
            .into_iter()
            .filter(|m| {
                m.contains("Content Security Policy") || m.contains("Content-Security-Policy")
            })
            .collect()
    }

    /// Opens a page that keeps a token on the device, with the token already entered.
    pub async fn open_with_token(&self, url: &str, key: &str, token: &str) {
        self.goto(url).await;
        self.exec(&format!(
            "localStorage.setItem('madoguchi.{key}', {}); location.reload(); return true;",
            serde_json::to_string(token).unwrap()
        ))
        .await;
    }

    /// Records, in every page opened from now on, what its Content-Security-Policy refused.
    pub async fn record_csp(&self) {
        self.before_each_page(
            "window.cspViolations = [];
             addEventListener('securitypolicyviolation',
               (e) => window.cspViolations.push(`${e.effectiveDirective} ${e.blockedURI}`), true);",
        )
        .await;
    }

    /// Panics when the current page (see [`Browser::record_csp`]) or the console reported a
    /// Content-Security-Policy violation.
    pub async fn assert_strict(&self, what: &str) {
        assert_eq!(
            self.exec("return window.cspViolations || []").await,
            serde_json::json!([]),
            "{what}: refused by the Content-Security-Policy"
        );
        self.assert_no_csp_violations(what).await;
    }

    /// Panics when a page broke its Content-Security-Policy since the last read of the console.
    pub async fn assert_no_csp_violations(&self, what: &str) {
        let violations = self.csp_violations().await;
        assert!(
            violations.is_empty(),
            "{what}: the Content-Security-Policy was violated:\n{}",
            violations.join("\n")
        );
    }

    /// Saves a PNG of the viewport to `target/screenshots/{name}.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd("GET", "/screenshot", Value::Null).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.wait();
    }
}
