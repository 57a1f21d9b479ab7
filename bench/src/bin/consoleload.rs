//! The web console's first load in headless Chromium: bytes transferred
//! (the page and every file it fetches) and the time to DOMContentLoaded
//! (when the console's modules have run), median of ROUNDS fresh browsers
//! (empty caches) for each URL.
//!
//! `consoleload [--warm] ROUNDS URL...`, e.g. torud's
//! `http://127.0.0.1:7070/ui/` against `limit`'s `http://127.0.0.1:7171/ui/`
//! (the same files, nothing else). `--warm` measures a second load in the
//! same browser (files revalidated with their ETags) instead of the first.
//! Needs /usr/bin/chromium and /usr/bin/chromedriver.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::ClientBuilder;
use serde_json::{Value, json};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1).peekable();
    let warm = args.next_if(|a| a == "--warm").is_some();
    let rounds: usize = args
        .next()
        .ok_or("usage: consoleload ROUNDS URL...")?
        .parse()?;
    let urls: Vec<String> = args.collect();
    for url in &urls {
        let mut bytes = Vec::new();
        let mut ready = Vec::new();
        let mut files = 0;
        for _ in 0..rounds {
            let (b, ms, n) = load(url, warm).await?;
            bytes.push(b);
            ready.push(ms);
            files = n;
        }
        bytes.sort_unstable();
        ready.sort_by(f64::total_cmp);
        println!(
            "{url}: {} bytes in {files} responses, DOMContentLoaded at {:.1} ms (median of {rounds}; fastest {:.1} ms)",
            bytes[rounds / 2],
            ready[rounds / 2],
            ready[0]
        );
    }
    Ok(())
}

/// One load in a new browser: (bytes transferred, ms to DOMContentLoaded, responses).
async fn load(url: &str, warm: bool) -> Result<(u64, f64, usize), BoxError> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut driver = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("chromedriver did not listen".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let profile = tempfile::tempdir()?;
    let options = json!({
        "binary": "/usr/bin/chromium",
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 format!("--user-data-dir={}", profile.path().display())],
    });
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(capabilities);
    let client = builder.connect(&format!("http://127.0.0.1:{port}")).await?;
    client.goto(url).await?;
    if warm {
        client.goto("about:blank").await?;
        client.goto(url).await?;
    }
    // The resources the modules fetch after the load event, too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let measured = client
        .execute(
            "const nav = performance.getEntriesByType('navigation')[0];
             const all = [nav, ...performance.getEntriesByType('resource')];
             return [all.reduce((s, e) => s + (e.transferSize || 0), 0),
                     nav.domContentLoadedEventEnd - nav.startTime, all.length];",
            Vec::new(),
        )
        .await?;
    client.close().await?;
    let _ = driver.kill();
    let _ = driver.wait();
    let number = |v: &Value| v.as_f64().unwrap_or(0.0);
    Ok((
        number(&measured[0]) as u64,
        number(&measured[1]),
        number(&measured[2]) as usize,
    ))
}
