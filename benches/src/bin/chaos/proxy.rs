//! A TCP proxy between the workers and the store's server. Cutting it closes every proxied
//! connection at once and refuses new ones until it is restored: to the engines that is a
//! real network outage (their sockets close mid-command), while the shared server, which
//! other clients use, keeps running.

use baseshift_core::{Error, ErrorKind, Result};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A running proxy.
pub struct Proxy {
    addr: SocketAddr,
    up: Arc<watch::Sender<bool>>,
}

impl Proxy {
    /// Listens on an ephemeral local port and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: String) -> Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::new(ErrorKind::Unavailable, format!("proxy: binding a local port: {e}")))?;
        let addr =
            listener.local_addr().map_err(|e| Error::new(ErrorKind::Internal, format!("proxy: local address: {e}")))?;
        let up = Arc::new(watch::channel(true).0);
        tokio::spawn(accept_loop(listener, upstream, up.clone()));
        Ok(Proxy { addr, up })
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every proxied connection and refuses new ones.
    pub fn cut(&self) {
        self.up.send_replace(false);
    }

    /// Accepts and forwards again.
    pub fn restore(&self) {
        self.up.send_replace(true);
    }
}

async fn accept_loop(listener: TcpListener, upstream: String, up: Arc<watch::Sender<bool>>) {
    loop {
        let Ok((client, _)) = listener.accept().await else { continue };
        if !*up.borrow() {
            drop(client);
            continue;
        }
        tokio::spawn(forward(client, upstream.clone(), up.subscribe()));
    }
}

async fn forward(mut client: TcpStream, upstream: String, mut up: watch::Receiver<bool>) {
    let Ok(mut server) = TcpStream::connect(&upstream).await else { return };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
        _ = up.wait_for(|up| !*up) => {}
    }
}

/// `url` with its `host:port` replaced by `addr` (`scheme://[user@]host:port/rest`).
pub fn via(url: &str, addr: SocketAddr) -> Result<String> {
    let (scheme, rest) =
        url.split_once("://").ok_or_else(|| Error::invalid_input(format!("URL without a scheme: {url:?}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let user = authority.rsplit_once('@').map(|(u, _)| format!("{u}@")).unwrap_or_default();
    Ok(format!("{scheme}://{user}{addr}{path}"))
}

/// The `host:port` of `url` (`default_port` when it names none).
pub fn upstream(url: &str, default_port: u16) -> Result<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return Err(Error::invalid_input(format!("URL without a host: {url:?}")));
    }
    let has_port = host.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) && !host.ends_with(']');
    Ok(if has_port { host.to_owned() } else { format!("{host}:{default_port}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_urls() -> Result<()> {
        let addr: SocketAddr = "127.0.0.1:4000".parse().map_err(|_| Error::internal("addr"))?;
        assert_eq!(via("postgres://postgres@127.0.0.1:5432/test", addr)?, "postgres://postgres@127.0.0.1:4000/test");
        assert_eq!(via("redis://127.0.0.1:6379", addr)?, "redis://127.0.0.1:4000");
        assert_eq!(upstream("redis://localhost", 6379)?, "localhost:6379");
        assert_eq!(upstream("postgres://u:p@db:5433/x", 5432)?, "db:5433");
        assert!(via("nonsense", addr).is_err());
        Ok(())
    }
}
