//! Cold start: the first request to a socket-activated server that is not
//! running yet.
//!
//! `coldstart PORT PATH TOKEN COMMAND [ARG...]` starts COMMAND (meant to be
//! `systemd-socket-activate -l 127.0.0.1:PORT ... SERVER`, which binds the
//! port and starts SERVER on the first connection), waits until the port
//! listens, then sends `GET PATH` over a new connection (with
//! `Authorization: Bearer TOKEN` unless TOKEN is `-`) until one answers 200,
//! 1 ms apart. Prints `first_answer_ms first_200_ms attempts`, counted from
//! the first connection; then stops COMMAND (SIGTERM, SIGKILL after 15 s).

use std::error::Error;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

type BoxError = Box<dyn Error + Send + Sync>;

/// Stops the child however `main` ends.
struct Stop(Child);

impl Drop for Stop {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.0.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether something listens on 127.0.0.1:`port` (from /proc/net/tcp).
fn listening(port: u16) -> Result<bool, BoxError> {
    let wanted = format!("0100007F:{port:04X}");
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    Ok(table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address, then st (0A: LISTEN).
        fields.get(1) == Some(&wanted.as_str()) && fields.get(3) == Some(&"0A")
    }))
}

/// One request on a new connection: the status, if an answer came.
fn status(port: u16, request: &[u8]) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ok()?;
    stream.write_all(request).ok()?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).ok()?;
    let line = String::from_utf8_lossy(answer.split(|&b| b == b'\n').next()?).into_owned();
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), BoxError> {
    let args: Vec<String> = std::env::args().collect();
    let [_, port, path, token, command, rest @ ..] = args.as_slice() else {
        return Err("usage: coldstart PORT PATH TOKEN COMMAND [ARG...]".into());
    };
    let port: u16 = port.parse()?;
    let auth = if token == "-" {
        String::new()
    } else {
        format!("Authorization: Bearer {token}\r\n")
    };
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Connection: close\r\n\r\n");
    let _child = Stop(Command::new(command).args(rest).spawn()?);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !listening(port)? {
        if Instant::now() > deadline {
            return Err(format!("nothing listens on 127.0.0.1:{port} after 10 s").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let started = Instant::now();
    let mut first_answer = None;
    let mut attempts = 0u32;
    loop {
        attempts += 1;
        let got = status(port, request.as_bytes());
        if got.is_some() && first_answer.is_none() {
            first_answer = Some(started.elapsed());
        }
        if got == Some(200) {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("no 200 within 30 s (last: {got:?})").into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let first_200 = started.elapsed();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{:.1} {:.1} {attempts}",
        ms(first_answer.unwrap_or(first_200)),
        ms(first_200)
    );
    Ok(())
}
