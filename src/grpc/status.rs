//! The one place errors become gRPC statuses. Every status carries a google.rpc.ErrorInfo
//! with a stable reason code and the numbers the client needs; malformed input also carries a
//! google.rpc.BadRequest naming the field. The message repeats the code for plain clients.
//! The status code comes from the reason ([`Reason::status`]), so a reason always travels with
//! the same code.

use std::collections::HashMap;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::Reason;
use crate::service::ServiceError;

use super::convert::FieldError;

/// ErrorInfo.domain of every error this server sends.
pub const ERROR_DOMAIN: &str = "emission-auction.v1";

/// The gRPC code a reason travels with.
pub fn code_of(reason: Reason) -> Code {
    match reason.status() {
        "INVALID_ARGUMENT" => Code::InvalidArgument,
        "FAILED_PRECONDITION" => Code::FailedPrecondition,
        "NOT_FOUND" => Code::NotFound,
        "ALREADY_EXISTS" => Code::AlreadyExists,
        "UNAUTHENTICATED" => Code::Unauthenticated,
        "PERMISSION_DENIED" => Code::PermissionDenied,
        "RESOURCE_EXHAUSTED" => Code::ResourceExhausted,
        "UNAVAILABLE" => Code::Unavailable,
        "ABORTED" => Code::Aborted,
        // Reasons that explain a settlement never end a call; anything else is the server's.
        _ => Code::Internal,
    }
}

/// A status code's canonical name, e.g. `FAILED_PRECONDITION`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

pub fn status(
    reason: Reason,
    message: impl std::fmt::Display,
    metadata: Vec<(&str, String)>,
    field: Option<&str>,
) -> Status {
    let metadata: HashMap<String, String> = metadata.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    let mut details = ErrorDetails::with_error_info(reason.code(), ERROR_DOMAIN, metadata);
    let message = format!("{reason}: {message}");
    if let Some(field) = field {
        details.add_bad_request_violation(field, message.clone());
    }
    Status::with_error_details(code_of(reason), message, details)
}

impl From<FieldError> for Status {
    fn from(e: FieldError) -> Status {
        let message = format!("{} {}", e.field, e.reason);
        status(Reason::InvalidField, message, vec![("field", e.field.clone())], Some(&e.field))
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Status {
        let reason = e.reason();
        match e {
            ServiceError::Engine(ref engine) => {
                let mut metadata = engine.details();
                if let Some(field) = engine.field() {
                    metadata.push(("field", field.to_owned()));
                }
                status(reason, engine, metadata, engine.field())
            }
            ServiceError::AuctionNotFound(id) | ServiceError::Busy(id) | ServiceError::AuctionFailed(id) => {
                status(reason, &e, vec![("auction_id", id.to_string())], None)
            }
            ServiceError::NotSettled { auction, closes_at } => status(
                reason,
                &e,
                vec![("auction_id", auction.to_string()), ("closes_at", closes_at.to_string())],
                None,
            ),
            ServiceError::RequestIdReused { ref request_id } => {
                status(reason, &e, vec![("request_id", request_id.clone())], Some("request_id"))
            }
            ServiceError::ShuttingDown | ServiceError::Unavailable(_) => status(reason, &e, Vec::new(), None),
            ServiceError::Registry(
                crate::service::registry::RegistryError::Exists(code)
                | crate::service::registry::RegistryError::NotFound(code),
            ) => status(reason, &e, vec![("enterprise", code.to_string())], Some("enterprise.credit_code")),
        }
    }
}
