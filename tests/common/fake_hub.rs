//! A stand-in for the Hugging Face Hub on loopback, speaking just enough of its HTTP
//! protocol (`/{repo}/resolve/{revision}/{file}` with range requests, commit and ETag
//! headers) for hf-hub's real download path to run against it. It serves a bounded
//! number of requests for a bounded time, then stops by itself.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest;

const MAX_REQUESTS: usize = 500;
const LIFETIME: Duration = Duration::from_secs(120);

pub struct FakeHub {
    pub endpoint: String,
    pub requests: Arc<AtomicUsize>,
}

/// Serve `files` (path `repo/revision/file` → bytes) as commit `commit`.
pub fn serve(commit: &str, files: HashMap<String, Vec<u8>>) -> FakeHub {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    let commit = commit.to_string();
    std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < LIFETIME && counter.load(Ordering::SeqCst) < MAX_REQUESTS {
            match listener.accept() {
                Ok((stream, _)) => {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = handle(stream, &commit, &files);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    FakeHub { endpoint, requests }
}

fn handle(
    stream: TcpStream,
    commit: &str,
    files: &HashMap<String, Vec<u8>>,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range_start = 0usize;
    let mut range_end: Option<usize> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            let (a, b) = value.trim().split_once('-').unwrap_or(("0", ""));
            range_start = a.parse().unwrap_or(0);
            range_end = b.parse().ok();
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or("/");
    // /{org}/{name}/resolve/{revision, %2F-escaped}/{file}
    let key = path
        .trim_start_matches('/')
        .replacen("/resolve/", "/", 1)
        .replace("%2F", "/");
    let mut out = stream;
    let Some(body) = files.get(&key) else {
        return write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    };
    let end = range_end
        .unwrap_or(body.len().saturating_sub(1))
        .min(body.len().saturating_sub(1));
    let slice =
        &body[range_start.min(body.len())..=end.max(range_start).min(body.len().saturating_sub(1))];
    let etag: String = sha2::Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    write!(
        out,
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {}-{}/{}\r\n\
         X-Repo-Commit: {commit}\r\nETag: \"{etag}\"\r\nConnection: close\r\n\r\n",
        slice.len(),
        range_start,
        range_start + slice.len().saturating_sub(1),
        body.len()
    )?;
    out.write_all(slice)?;
    out.flush()
}
