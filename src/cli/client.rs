//! A connection to a server as one principal: the three generated clients with the bearer
//! token attached to every call.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use crate::proto as pb;

#[derive(Clone)]
pub struct Bearer(MetadataValue<Ascii>);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.0.clone());
        Ok(request)
    }
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
    #[error("could not connect to {addr}: {source}")]
    Connect { addr: String, source: tonic::transport::Error },
    #[error("the token must be printable ASCII")]
    Token,
}

impl Terminal {
    pub async fn connect(addr: &str, token: &str) -> Result<Terminal, ConnectError> {
        let channel = Channel::from_shared(addr.to_owned())
            .map_err(|_| ConnectError::Address(addr.to_owned()))?
            .connect()
            .await
            .map_err(|source| ConnectError::Connect { addr: addr.to_owned(), source })?;
        Terminal::on(channel, token)
    }

    /// Shares one HTTP/2 connection among principals.
    pub fn on(channel: Channel, token: &str) -> Result<Terminal, ConnectError> {
        let value: MetadataValue<Ascii> = format!("Bearer {token}").parse().map_err(|_| ConnectError::Token)?;
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

/// A fresh client request id.
pub fn request_id() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    format!("cli-{}", hex::encode(bytes))
}
