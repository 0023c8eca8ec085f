//! The worker's SUB thread against a real ZMQ PUB socket with CURVE: garbage
//! is dropped and counted, other nodes' lists are ignored, good lists and the
//! master's sign of life arrive, each only on its own topic; a publisher without
//! the master's key is never heard.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroku_bus::{curve, Keys};
use zeroku_conf::wire::{encode, Alive, Message};
use zeroku_conf::NodeList;
use zeroku_worker::bus::{start_sub, Curve};

/// The list in `m`, or a panic.
fn as_list(m: Message) -> NodeList {
    match m {
        Message::NodeList(l) => l,
        other => panic!("not a list: {other:?}"),
    }
}

fn list(node: &str, generation: u64) -> Vec<u8> {
    encode(&Message::NodeList(NodeList {
        node: node.into(),
        generation,
        instances: vec![],
    }))
    .unwrap()
}

#[test]
fn garbage_on_the_sub_socket_is_dropped_and_good_lists_arrive() {
    let ctx = zmq::Context::new();
    let master = Keys::generate().unwrap();
    let publisher = ctx.socket(zmq::PUB).unwrap();
    curve::server(&publisher, &master, "bus").unwrap();
    publisher.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = publisher.get_last_endpoint().unwrap().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let dropped = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let node = Curve {
        keys: Keys::generate().unwrap(),
        server: master.public,
    };
    let thread = start_sub(
        &ctx,
        &endpoint,
        &node,
        "node/n1",
        tx,
        dropped.clone(),
        stop.clone(),
    )
    .unwrap();

    // Slow joiner: publish good lists until the first one arrives.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        publisher
            .send_multipart([&b"node/n1"[..], &list("n1", 1)], 0)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(m) = rx.try_recv() {
            break as_list(m);
        }
        assert!(Instant::now() < deadline, "no list arrived");
    };
    assert_eq!(first.generation, 1);
    while rx.try_recv().is_ok() {}

    publisher
        .send_multipart([&b"node/n1"[..], b"\xff\x00garbage"], 0)
        .unwrap();
    publisher.send_multipart([&b"node/n1"[..], b""], 0).unwrap();
    publisher.send(&b"node/n1"[..], 0).unwrap(); // one frame only
    publisher
        .send_multipart([&b"node/n1"[..], &[0x92, 99, 0xc0][..]], 0)
        .unwrap(); // newer version
    publisher
        .send_multipart([&b"node/n10"[..], &list("n10", 5)], 0)
        .unwrap(); // another node
    let alive = encode(&Message::Alive(Alive { heartbeat_ms: 5000 })).unwrap();
    publisher
        .send_multipart([&b"alive"[..], &list("n1", 8)], 0)
        .unwrap(); // a list on the broadcast topic
    publisher
        .send_multipart([&b"node/n1"[..], &alive], 0)
        .unwrap(); // a sign of life on the node's topic
    publisher
        .send_multipart([&b"node/n1"[..], &list("n1", 7)], 0)
        .unwrap();
    publisher
        .send_multipart([&b"alive"[..], &alive], 0)
        .unwrap();

    let got = as_list(rx.blocking_recv().unwrap());
    assert_eq!((got.node.as_str(), got.generation), ("n1", 7));
    assert_eq!(
        rx.blocking_recv(),
        Some(Message::Alive(Alive { heartbeat_ms: 5000 }))
    );
    assert_eq!(dropped.load(Ordering::Relaxed), 6);
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    thread.join().unwrap();
}

#[test]
fn a_publisher_without_the_masters_key_is_never_heard() {
    let ctx = zmq::Context::new();
    let impostor = ctx.socket(zmq::PUB).unwrap();
    curve::server(&impostor, &Keys::generate().unwrap(), "bus").unwrap();
    impostor.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = impostor.get_last_endpoint().unwrap().unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel(16);
    let stop = Arc::new(AtomicBool::new(false));
    let node = Curve {
        keys: Keys::generate().unwrap(),
        server: Keys::generate().unwrap().public, // the real master's
    };
    let dropped = Arc::new(AtomicU64::new(0));
    let thread = start_sub(&ctx, &endpoint, &node, "node/n1", tx, dropped, stop.clone()).unwrap();
    for _ in 0..50 {
        impostor
            .send_multipart([&b"node/n1"[..], &list("n1", 9)], 0)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(rx.try_recv().is_err(), "a list from an impostor arrived");
    stop.store(true, Ordering::Relaxed);
    drop(rx);
    thread.join().unwrap();
}
