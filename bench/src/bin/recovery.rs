//! Time from `kill -9` of a plugin to its next successful response through
//! torud, repeated: `recovery SOCKET PLUGIN_ID ROUTE COUNT`.
//!
//! Talks to torud's Unix socket with plain HTTP/1.1 (one request per
//! connection); prints one line per run (ms) and the median.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

fn get(socket: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = UnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: toru\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let status = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

fn pid(socket: &str, id: &str) -> Option<u32> {
    let (_, body) = get(socket, &format!("/api/plugins/{id}"))?;
    let json: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    json["pid"].as_u64().and_then(|p| u32::try_from(p).ok())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, socket, id, route, count] = args.as_slice() else {
        return Err("usage: recovery SOCKET PLUGIN_ID ROUTE COUNT".into());
    };
    let count: usize = count.parse()?;
    let path = format!("/api/plugins/route/{route}/");
    let mut times = Vec::new();
    for _ in 0..count {
        let pid = pid(socket, id).ok_or("plugin has no pid (not running?)")?;
        let killed = Instant::now();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()?;
        loop {
            if matches!(get(socket, &path), Some((200, _))) && self::pid(socket, id) != Some(pid) {
                break;
            }
            if killed.elapsed() > Duration::from_secs(30) {
                return Err("no recovery within 30 s".into());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let ms = killed.elapsed().as_secs_f64() * 1000.0;
        println!("{ms:.1}");
        times.push(ms);
        // Let the plugin become "stable" again so every run is a first failure.
        std::thread::sleep(Duration::from_millis(1500));
    }
    times.sort_by(f64::total_cmp);
    if let Some(median) = times.get(times.len() / 2) {
        println!("median {median:.1}");
    }
    Ok(())
}
