//! Connections: a cap on how many are open at once, and an idle timeout. Each accepted socket
//! is wrapped in a [`Tracked`] that holds a permit of the connection cap and shares an
//! [`Activity`] with the requests made over it ([`InFlightLayer`] counts them until their
//! response body ends). A connection with no request in flight for the idle timeout is closed;
//! a connection that is busy (a long `WatchAuction` stream included) is never idle.
//!
//! HTTP/2 keepalive pings (configured on the server) find dead peers; the idle timeout finds
//! live peers that hold a connection without using it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_stream::Stream;
use tonic::transport::server::Connected;

/// What the server knows of a connection; in every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote_addr: Option<SocketAddr>,
    activity: Arc<Activity>,
}

/// Requests in flight on one connection and when the last one started or ended.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    /// Milliseconds since [`epoch`] of the last start or end of a request.
    last_ms: AtomicU64,
}

/// A process-wide origin for the millisecond stamps above, on tokio's clock like the timer.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

impl Activity {
    fn new() -> Activity {
        Activity { in_flight: AtomicUsize::new(0), last_ms: AtomicU64::new(now_ms()) }
    }

    fn touch(&self) {
        self.last_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// How long the connection has been without a request, or `None` while one is in flight.
    fn idle_for(&self) -> Option<Duration> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(Duration::from_millis(now_ms().saturating_sub(self.last_ms.load(Ordering::Relaxed))))
    }
}

/// Counts a request as in flight until dropped (with the response body it travels in).
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        InFlight(Arc::clone(activity))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// An accepted socket that holds a permit of the connection cap and closes itself when idle.
pub struct Tracked {
    io: TcpStream,
    info: ConnInfo,
    idle_timeout: Duration,
    timer: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Tracked {
    /// Whether the idle timeout passed; otherwise the timer is set to when it next could.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> bool {
        while self.timer.as_mut().poll(cx).is_ready() {
            match self.info.activity.idle_for() {
                Some(idle) if idle >= self.idle_timeout => return true,
                Some(idle) => self.timer.as_mut().reset(tokio::time::Instant::now() + (self.idle_timeout - idle)),
                None => self.timer.as_mut().reset(tokio::time::Instant::now() + self.idle_timeout),
            }
        }
        false
    }
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Pending if this.poll_idle(cx) => {
                tracing::debug!(peer = ?this.info.remote_addr, "closing an idle connection");
                Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle")))
            }
            other => other,
        }
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Tracked {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// Accepted connections, each [`Tracked`]; past `max_connections` open at once a new
/// connection is closed as soon as it is accepted.
pub fn incoming(
    listener: TcpListener,
    max_connections: usize,
    idle_timeout: Duration,
) -> impl Stream<Item = std::io::Result<Tracked>> {
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let accepted = tokio_stream::wrappers::TcpListenerStream::new(listener);
    tokio_stream::StreamExt::filter_map(accepted, move |socket| {
        let socket = match socket {
            Ok(socket) => socket,
            Err(e) => return Some(Err(e)),
        };
        let remote_addr = socket.peer_addr().ok();
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tracing::warn!(peer = ?remote_addr, max_connections, "connection refused: too many open connections");
            return None;
        };
        let _ = socket.set_nodelay(true);
        Some(Ok(Tracked {
            io: socket,
            info: ConnInfo { remote_addr, activity: Arc::new(Activity::new()) },
            idle_timeout,
            timer: Box::pin(tokio::time::sleep(idle_timeout)),
            _permit: permit,
        }))
    })
}

/// Counts each request as in flight on its connection until its response body ends.
#[derive(Debug, Clone, Copy, Default)]
pub struct InFlightLayer;

impl<S> tower::Layer<S> for InFlightLayer {
    type Service = InFlightService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        InFlightService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct InFlightService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for InFlightService<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Guarded<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let guard = request.extensions().get::<ConnInfo>().map(|c| InFlight::start(&c.activity));
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| Guarded { body: Box::pin(body), _guard: guard }))
        })
    }
}

/// A response body that keeps its request counted as in flight until it ends or is dropped.
pub struct Guarded<B> {
    body: Pin<Box<B>>,
    _guard: Option<InFlight>,
}

impl<B: http_body::Body> http_body::Body for Guarded<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.body.as_mut().poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
