//! The accept loop: the connection limit follows the open-file limit, and
//! running out of file descriptors never stops the server.

mod common;

use std::net::TcpStream;

use common::{Server, eventually, read_reply, send};
use rustix::process::{Pid, Resource, Rlimit, prlimit};

#[test]
fn max_connections_is_lowered_to_the_open_file_limit() {
    let server = Server::start_with_fd_limit(256, &[]);
    let line = "--max-connections 1024 lowered to 192: the open-file limit is 256";
    eventually("the log line", || {
        server.stderr().contains(line).then_some(())
    });
    assert_eq!(server.get("/stats").status, 200);
}

#[test]
fn the_accept_loop_survives_running_out_of_file_descriptors() {
    let server = Server::start(&[]);
    let mut held: Vec<TcpStream> = (0..20).map(|_| server.connect()).collect();
    for stream in &mut held {
        send(stream, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_reply(stream).status, 200);
    }
    // No descriptor left for another connection: the limit is one above
    // the highest open descriptor, and the holes below it are filled with
    // more connections.
    let pid = server.pid();
    let fds: Vec<u64> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the server's descriptors")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    let top = fds.iter().max().copied().expect("some descriptors") + 1;
    let pid = Pid::from_raw(i32::try_from(pid).expect("a pid")).expect("a pid");
    let limit = Rlimit {
        current: Some(top),
        maximum: Some(top),
    };
    prlimit(Some(pid), Resource::Nofile, limit).expect("lower the server's limit");
    for _ in fds.len() as u64..top {
        let mut stream = server.connect();
        send(&mut stream, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_reply(&mut stream).status, 200);
        held.push(stream);
    }

    let mut waiting = server.connect();
    send(&mut waiting, b"GET /stats HTTP/1.1\r\nHost: x\r\n\r\n");
    eventually("an accept error to be logged", || {
        server
            .stderr()
            .contains("accepting a connection failed: Too many open files")
            .then_some(())
    });
    // The connections it has are served throughout.
    for stream in &mut held {
        send(stream, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert_eq!(read_reply(stream).status, 200);
    }
    // Descriptors come back: the waiting connection is accepted and answered.
    drop(held);
    assert_eq!(read_reply(&mut waiting).status, 200);
    assert_eq!(server.get("/stats").status, 200);
}
