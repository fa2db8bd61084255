//! The one place errors become gRPC statuses. Every status carries a google.rpc.ErrorInfo
//! with a stable reason code and the numbers the client needs; malformed input also carries a
//! google.rpc.BadRequest naming the field. The message repeats the code for plain clients.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::engine::ErrorClass;
use crate::service::ServiceError;

use super::convert::FieldError;

/// ErrorInfo.domain of every error this server sends.
pub const ERROR_DOMAIN: &str = "emission-auction.v1";

pub fn status(
    code: Code,
    reason: &str,
    message: impl std::fmt::Display,
    metadata: Vec<(&str, String)>,
    field: Option<&str>,
) -> Status {
    let metadata: HashMap<String, String> = metadata.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let mut details = ErrorDetails::with_error_info(reason, ERROR_DOMAIN, metadata);
    let message = format!("{reason}: {message}");
    if let Some(field) = field {
        details.add_bad_request_violation(field, message.clone());
    }
    Status::with_error_details(code, message, details)
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Status {
        let message = format!("{} {}", e.field, e.reason);
        status(Code::InvalidArgument, "INVALID_FIELD", message, vec![("field", e.field.clone())], Some(&e.field))
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        match e {
            ServiceError::Engine(e) => {
                let code = match e.class() {
                    ErrorClass::InvalidArgument => Code::InvalidArgument,
                    ErrorClass::FailedPrecondition => Code::FailedPrecondition,
                    ErrorClass::NotFound => Code::NotFound,
                    ErrorClass::Conflict => Code::Aborted,
                };
                let mut metadata = e.details();
                if let Some(field) = e.field() {
                    metadata.push(("field", field.to_owned()));
                }
                status(code, e.reason(), &e, metadata, e.field())
            }
            ServiceError::AuctionNotFound(id) => {
                status(Code::NotFound, "AUCTION_NOT_FOUND", &e, vec![("auction_id", id.to_string())], None)
            }
            ServiceError::LotTaken { auction, .. } => status(
                Code::AlreadyExists,
                "LOT_TAKEN",
                &e,
                vec![("auction_id", auction.to_string())],
                Some("lot.lot_id"),
            ),
            ServiceError::Busy(id) => {
                status(Code::ResourceExhausted, "AUCTION_BUSY", &e, vec![("auction_id", id.to_string())], None)
            }
            ServiceError::RequestIdReused { ref request_id } => status(
                Code::AlreadyExists,
                "REQUEST_ID_REUSED",
                &e,
                vec![("request_id", request_id.clone())],
                Some("request_id"),
            ),
            ServiceError::ShuttingDown => status(Code::Unavailable, "SHUTTING_DOWN", &e, Vec::new(), None),
            ServiceError::Unavailable(_) => status(Code::Unavailable, "JOURNAL_UNAVAILABLE", &e, Vec::new(), None),
        }
    }
}
