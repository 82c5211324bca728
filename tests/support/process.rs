//! The real vaultgate binary as a child process of a test.

#![allow(dead_code)]

use std::process::Child;

/// A child process, killed and reaped when dropped (a failing test leaves none behind).
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address free at the moment of asking.
pub fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
