//! A TCP proxy in front of a real server, to make it unreachable on demand
//! without stopping it: tests point the service at the proxy, then cut the
//! line (connections closed, new ones refused) or let it hang (connections
//! accepted, nothing ever answered, as behind a dropped route).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// Forwards both ways.
    Open,
    /// Closes every connection at once, new ones included.
    Cut,
    /// Keeps connections, forwards nothing.
    Hang,
}

pub struct TcpProxy {
    port: u16,
    line: watch::Sender<Line>,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TcpProxy {
    /// Listens on a free loopback port, forwarding to `target`.
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let port = listener.local_addr().expect("proxy addr").port();
        let (line, _) = watch::channel(Line::Open);
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (tx, tracked) = (line.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let mut state = tx.subscribe();
                let task = tokio::spawn(async move {
                    let mode = *state.borrow_and_update();
                    if mode == Line::Cut {
                        return;
                    }
                    let forward = async {
                        if mode == Line::Hang {
                            return std::future::pending::<()>().await;
                        }
                        let Ok(mut server) = TcpStream::connect(target).await else {
                            return;
                        };
                        let mut client = client;
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    };
                    // Any change of the line ends this connection.
                    tokio::select! {
                        _ = forward => {}
                        _ = state.changed() => {}
                    }
                });
                if let Ok(mut c) = tracked.lock() {
                    c.retain(|t| !t.is_finished());
                    c.push(task);
                }
            }
        });
        TcpProxy {
            port,
            line,
            accept,
            conns,
        }
    }

    /// In front of the server a URL such as `postgres://u@host:5432/db`
    /// names (port 5432 when it names none).
    pub async fn in_front_of(url: &str) -> TcpProxy {
        let (host, port) = host_port(url);
        let target = tokio::net::lookup_host((host.as_str(), port))
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve {host}:{port}"));
        Self::start(target).await
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets what happens to traffic; existing connections are closed.
    pub fn set(&self, line: Line) {
        self.line.send_replace(line);
    }

    /// `url` (e.g. a PostgreSQL URL) with its host and port replaced by the
    /// proxy's.
    pub fn url_through(&self, url: &str) -> String {
        let scheme_end = url.find("://").map_or(0, |i| i + 3);
        let rest = &url[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        let userinfo = authority.rfind('@').map_or("", |i| &authority[..=i]);
        format!(
            "{}{userinfo}127.0.0.1:{}{}",
            &url[..scheme_end],
            self.port,
            &rest[authority_end..]
        )
    }
}

fn authority(url: &str) -> &str {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[scheme_end..];
    let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
    authority.rsplit('@').next().unwrap_or(authority)
}

fn host_port(url: &str) -> (String, u16) {
    let hp = authority(url);
    let (host, port) = match hp.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((h, tail)) => (h, tail.strip_prefix(':')),
            None => (bracketed, None),
        },
        None => match hp.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        },
    };
    (
        host.to_owned(),
        port.and_then(|p| p.parse().ok()).unwrap_or(5432),
    )
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        if let Ok(c) = self.conns.lock() {
            for t in c.iter() {
                t.abort();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_are_pointed_at_the_proxy() {
        let p = TcpProxy::start("127.0.0.1:1".parse().unwrap()).await;
        let port = p.port();
        assert_eq!(
            p.url_through("postgres://u:pw@db.example:5432/x?sslmode=disable"),
            format!("postgres://u:pw@127.0.0.1:{port}/x?sslmode=disable")
        );
        assert_eq!(
            p.url_through("postgres://127.0.0.1/x"),
            format!("postgres://127.0.0.1:{port}/x")
        );
        assert_eq!(host_port("postgres://u:p@db:6543/x"), ("db".into(), 6543));
        assert_eq!(host_port("postgres://db/x"), ("db".into(), 5432));
    }
}
