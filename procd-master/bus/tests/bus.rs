//! The bus's walls on real libzmq sockets: CURVE with a ZAP handler on a PUSH/PULL pair and on a
//! manual XPUB, with a registered peer, a peer with an unknown key and a peer without CURVE.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroku_bus::peer::{self, Subscription};
use zeroku_bus::{curve, zap, Keys};

fn free_endpoint() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("tcp://{}", l.local_addr().unwrap())
}

struct Server {
    ctx: zmq::Context,
    keys: Keys,
    refused: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// A context whose ZAP handler knows `known` as "n1".
fn server(known: &Keys) -> Server {
    let ctx = zmq::Context::new();
    let keys = Keys::generate().unwrap();
    let refused = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let k = known.public;
    zap::start(
        &ctx,
        move |_, key| (*key == k).then(|| "n1".to_string()),
        refused.clone(),
        stop.clone(),
    )
    .unwrap();
    Server {
        ctx,
        keys,
        refused,
        stop,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[test]
fn only_a_registered_key_can_push_and_its_messages_say_who_it_is() {
    let node = Keys::generate().unwrap();
    let s = server(&node);
    let pull = s.ctx.socket(zmq::PULL).unwrap();
    curve::server(&pull, &s.keys, "bus").unwrap();
    let ep = free_endpoint();
    pull.bind(&ep).unwrap();
    pull.set_rcvtimeo(3000).unwrap();

    let other = zmq::Context::new();
    // A stranger with a key of its own, and one with no CURVE at all.
    let stranger = other.socket(zmq::PUSH).unwrap();
    stranger.set_linger(0).unwrap();
    curve::client(&stranger, &Keys::generate().unwrap(), &s.keys.public).unwrap();
    stranger.connect(&ep).unwrap();
    stranger.send("forged", zmq::DONTWAIT).ok();
    let plain = other.socket(zmq::PUSH).unwrap();
    plain.set_linger(0).unwrap();
    plain.connect(&ep).unwrap();
    plain.send("plain", zmq::DONTWAIT).ok();
    let good = other.socket(zmq::PUSH).unwrap();
    good.set_linger(0).unwrap();
    curve::client(&good, &node, &s.keys.public).unwrap();
    good.connect(&ep).unwrap();
    good.send("hello", 0).unwrap();

    let mut msg = pull.recv_msg(0).expect("the registered peer's message");
    assert_eq!(&msg[..], b"hello");
    assert_eq!(peer::user_id(&mut msg).as_deref(), Some("n1"));
    pull.set_rcvtimeo(500).unwrap();
    assert!(pull.recv_msg(0).is_err(), "nothing from the others");
    let t = Instant::now();
    while s.refused.load(Ordering::Relaxed) < 1 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        s.refused.load(Ordering::Relaxed) >= 1,
        "the stranger was counted"
    );
}

#[test]
fn a_manual_xpub_gives_a_peer_only_the_topics_it_is_let_in_for() {
    let node = Keys::generate().unwrap();
    let s = server(&node);
    let mut xpub = s.ctx.socket(zmq::XPUB).unwrap();
    peer::set_xpub_manual(&mut xpub).unwrap();
    curve::server(&xpub, &s.keys, "bus").unwrap();
    let ep = free_endpoint();
    xpub.bind(&ep).unwrap();

    let other = zmq::Context::new();
    let sub = other.socket(zmq::SUB).unwrap();
    curve::client(&sub, &node, &s.keys.public).unwrap();
    // It asks for its own topic and for everything.
    sub.set_subscribe(b"node/n1").unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.connect(&ep).unwrap();
    sub.set_rcvtimeo(500).unwrap();
    let stranger = other.socket(zmq::SUB).unwrap();
    curve::client(&stranger, &Keys::generate().unwrap(), &s.keys.public).unwrap();
    stranger.set_subscribe(b"").unwrap();
    stranger.connect(&ep).unwrap();
    stranger.set_rcvtimeo(500).unwrap();

    // The publisher lets n1 have node/n1 only.
    xpub.set_rcvtimeo(3000).unwrap();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let mut m = xpub.recv_msg(0).expect("n1's subscriptions");
        let who = peer::user_id(&mut m);
        let s = peer::parse(&m).unwrap();
        let Subscription::Subscribe(topic) = s else {
            panic!("unexpected {s:?}")
        };
        seen.push(topic.to_vec());
        if who.as_deref() == Some("n1") && topic == b"node/n1" {
            peer::accept(&xpub, &s).unwrap();
        }
    }
    for _ in 0..20 {
        xpub.send_multipart([&b"node/n2"[..], b"secret of n2"], 0)
            .unwrap();
        xpub.send_multipart([&b"node/n1"[..], b"for n1"], 0)
            .unwrap();
        if let Ok(m) = sub.recv_multipart(0) {
            assert_eq!(m, vec![b"node/n1".to_vec(), b"for n1".to_vec()]);
            break;
        }
    }
    // Whatever else arrives is still n1's own.
    while let Ok(m) = sub.recv_multipart(0) {
        assert_eq!(m[0], b"node/n1");
    }
    assert!(
        stranger.recv_multipart(0).is_err(),
        "a stranger gets nothing"
    );
}
