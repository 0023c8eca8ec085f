//! zeroku-frontend: the public HTTP/1.1 + WebSocket edge.
//!
//! It will route requests by host and path to Mongrel2-protocol handlers (ZMQ
//! PUSH/SUB, one socket pair per app), to app instances listening on `$PORT`,
//! or to static directories, from the route table the master publishes.
//! It must not hold state of its own beyond in-flight requests: routes come
//! from the master. Not built yet; see the project's issues.
#![forbid(unsafe_code)]
