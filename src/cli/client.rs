//! A connection to a server as one principal: the three generated clients with the bearer
//! token attached to every call, over TLS (optionally with a client certificate) or, for
//! loopback development, plain text.

use std::path::PathBuf;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic::{Request, Status};

use crate::proto as pb;

/// The `authorization` value every call carries; none when a client certificate identifies the
/// caller.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// TLS files for a client: the CA that signed the server's certificate and, for mutual TLS, the
/// client's certificate and key.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry, when it differs from the URL's host.
    pub domain: Option<String>,
}

type Authed = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Terminal {
    pub operator: pb::auction_operator_client::AuctionOperatorClient<Authed>,
    pub trading: pb::trading_client::TradingClient<Authed>,
    pub results: pb::results_client::ResultsClient<Authed>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("server address {0:?} is not a valid URI")]
    Address(String),
    #[error("could not connect to {addr}: {}", chain(.source))]
    Connect { addr: String, source: tonic::transport::Error },
    #[error("the token must be printable ASCII")]
    Token,
    #[error("{0}")]
    Tls(String),
}

impl Terminal {
    /// Connects in plain text (an `http://` address) with a token.
    pub async fn connect(addr: &str, token: &str) -> Result<Terminal, ConnectError> {
        Terminal::connect_with(addr, Some(token), &ClientTls::default()).await
    }

    /// Connects over TLS for an `https://` address (`tls.ca` is then required), in plain text
    /// for `http://`; with a token, or without one when the client certificate maps to a
    /// principal.
    pub async fn connect_with(addr: &str, token: Option<&str>, tls: &ClientTls) -> Result<Terminal, ConnectError> {
        let channel = connect_channel(addr, tls).await?;
        Terminal::on_with(channel, token)
    }

    /// Shares one HTTP/2 connection among principals.
    pub fn on(channel: Channel, token: &str) -> Result<Terminal, ConnectError> {
        Terminal::on_with(channel, Some(token))
    }

    pub fn on_with(channel: Channel, token: Option<&str>) -> Result<Terminal, ConnectError> {
        let value = token
            .map(|token| format!("Bearer {token}").parse::<MetadataValue<Ascii>>().map_err(|_| ConnectError::Token))
            .transpose()?;
        let bearer = Bearer(value);
        Ok(Terminal {
            operator: pb::auction_operator_client::AuctionOperatorClient::with_interceptor(
                channel.clone(),
                bearer.clone(),
            ),
            trading: pb::trading_client::TradingClient::with_interceptor(channel.clone(), bearer.clone()),
            results: pb::results_client::ResultsClient::with_interceptor(channel, bearer),
        })
    }
}

/// An error and its sources, `a: b: c`, since a transport error alone says only "transport error".
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// A channel to `addr`: TLS for `https://`, plain text for `http://`.
pub async fn connect_channel(addr: &str, tls: &ClientTls) -> Result<Channel, ConnectError> {
    let mut endpoint = Channel::from_shared(addr.to_owned()).map_err(|_| ConnectError::Address(addr.to_owned()))?;
    let https = addr.starts_with("https://");
    let any_tls = tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() || tls.domain.is_some();
    if !https && any_tls {
        return Err(ConnectError::Tls(format!("TLS options need an https:// server address, not {addr}")));
    }
    if https {
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|e| ConnectError::Tls(format!("{}: {e}", path.display())));
        let ca = tls.ca.as_ref().ok_or_else(|| {
            ConnectError::Tls(
                "an https:// server needs --ca (EA_CA): the CA certificate that signed the server's".into(),
            )
        })?;
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
        match (&tls.cert, &tls.key) {
            (Some(cert), Some(key)) => config = config.identity(Identity::from_pem(read(cert)?, read(key)?)),
            (None, None) => {}
            _ => return Err(ConnectError::Tls("a client certificate needs both --cert and --key".into())),
        }
        if let Some(domain) = &tls.domain {
            config = config.domain_name(domain.clone());
        }
        endpoint =
            endpoint.tls_config(config).map_err(|source| ConnectError::Connect { addr: addr.to_owned(), source })?;
    }
    endpoint.connect().await.map_err(|source| ConnectError::Connect { addr: addr.to_owned(), source })
}

/// A fresh client request id.
pub fn request_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!("cli-{}", hex::encode(bytes))
}
