//! A `web` process in Rust with only the standard library: answers every
//! request on $PORT with a line naming the version it was built from.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

const VERSION: &str = include_str!("../VERSION");

fn answer(stream: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    // Read the request head; the body (if any) is ignored.
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let body = format!("Hello from Rust (version {})\n", VERSION.trim());
    let mut out = stream;
    write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "5000".into());
    let listener = TcpListener::bind(("0.0.0.0", port.parse().unwrap_or(5000)))?;
    eprintln!("listening on {port}");
    for stream in listener.incoming() {
        if let Ok(stream) = stream {
            std::thread::spawn(move || {
                let _ = answer(stream);
            });
        }
    }
    Ok(())
}
