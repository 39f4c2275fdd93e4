//! Benchmark (ignored by default; prints a table): throughput and connection setup through a
//! published port (the daemon's userland proxy) against a direct loopback connection and a
//! direct connection to the container's bridge address.
//!
//! `cargo test --release -p tests --test it -- --ignored --nocapture kernel::network_bench`

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use backend::network::NetworkMode;

use super::network::Fixture;

const TOTAL: usize = 256 << 20;
const CHUNK: usize = 256 << 10;
const CONNECTS: usize = 500;

/// Serves on `l` forever: each connection's first byte says what to do. `b'T'`: read to EOF,
/// answer with the byte count; `b'P'`: answer one byte and close.
fn serve(l: TcpListener) {
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut first = [0u8; 1];
                if c.read_exact(&mut first).is_err() {
                    return;
                }
                if first[0] == b'P' {
                    let _ = c.write_all(b"p");
                    return;
                }
                let mut buf = vec![0u8; CHUNK];
                let mut n = 1u64;
                while let Ok(k) = c.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                    n += k as u64;
                }
                let _ = c.write_all(&n.to_le_bytes());
            });
        }
    });
}

fn throughput(addr: SocketAddr) -> f64 {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    let buf = vec![0x5au8; CHUNK];
    let start = Instant::now();
    s.write_all(b"T").expect("write");
    let mut sent = 1;
    while sent < TOTAL {
        s.write_all(&buf).expect("write");
        sent += buf.len();
    }
    s.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut n = [0u8; 8];
    s.read_exact(&mut n).expect("count");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(
        u64::from_le_bytes(n) as usize,
        sent,
        "bytes lost through {addr}"
    );
    sent as f64 / (1 << 20) as f64 / secs
}

/// Connect, one byte each way, close: median and p99 in µs.
fn setup_latency(addr: SocketAddr) -> (f64, f64) {
    let mut v: Vec<Duration> = (0..CONNECTS)
        .map(|_| {
            let t = Instant::now();
            let mut s = TcpStream::connect(addr).expect("connect");
            s.set_nodelay(true).expect("nodelay");
            s.write_all(b"P").expect("write");
            let mut b = [0u8; 1];
            s.read_exact(&mut b).expect("read");
            t.elapsed()
        })
        .collect();
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    (us(v[v.len() / 2]), us(v[v.len() * 99 / 100]))
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn published_port_vs_loopback() {
    let fx = Fixture::new();
    let port = tests::free_port();
    let att = fx.attach("bench", NetworkMode::Bridge, &[&format!("{port}:9000")]);
    let ns = att.netns.clone().expect("netns");
    let inside = fx
        .inside(&ns, || TcpListener::bind("0.0.0.0:9000"))
        .expect("listen in the namespace");
    serve(inside);
    let host = TcpListener::bind("127.0.0.1:0").expect("listen on loopback");
    let direct = host.local_addr().expect("addr");
    serve(host);
    let ip = att.address.expect("address");

    let rows: [(&str, SocketAddr); 3] = [
        ("direct loopback 127.0.0.1", direct),
        ("container address over the bridge", (ip, 9000).into()),
        (
            "published port 127.0.0.1 (proxy)",
            (Ipv4Addr::LOCALHOST, port).into(),
        ),
    ];
    println!();
    println!(
        "| path | MiB/s ({} MiB) | connect+1B echo median µs | p99 µs |",
        TOTAL >> 20
    );
    println!("|---|---:|---:|---:|");
    for (name, addr) in rows {
        let _ = throughput(addr); // warm-up
        let mbps = (0..3).map(|_| throughput(addr)).fold(0.0, f64::max);
        let (med, p99) = setup_latency(addr);
        println!("| {name} | {mbps:.0} | {med:.0} | {p99:.0} |");
    }
}
