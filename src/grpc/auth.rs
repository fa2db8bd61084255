//! Authentication for the three API services. The interceptor resolves the caller from its
//! bearer token or, over mutual TLS, from its client certificate, and leaves a [`Caller`] in the
//! request's extensions; handlers then check the role. Changing calls also pass the caller's
//! rate limit ([`admit_change`]). Health and reflection are mounted without it.
//!
//! The principal set is read from the [`PrincipalStore`] on every call, so a reload (SIGHUP, a
//! change of the file) takes effect on the next call: a removed or rotated token is refused.

use std::sync::Arc;
use std::time::SystemTime;

use tonic::transport::server::TlsConnectInfo;
use tonic::{Request, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::{Caller, PrincipalStore, Role};
use crate::domain::{CreditCode, Reason};

use super::conn::ConnInfo;
use super::limits::RateLimiter;
use super::status::{ERROR_DOMAIN, code_of, status};

#[derive(Clone)]
pub struct Authenticator {
    principals: Arc<PrincipalStore>,
    limiter: Arc<RateLimiter>,
}

impl Authenticator {
    pub fn new(principals: Arc<PrincipalStore>, limiter: Arc<RateLimiter>) -> Authenticator {
        Authenticator { principals, limiter }
    }

    pub fn intercept(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let principals = self.principals.current();
        // A verified client certificate (the TLS layer checked it against the client CA) that
        // maps to a principal identifies the caller without a token.
        let by_cert = request
            .extensions()
            .get::<TlsConnectInfo<ConnInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            .and_then(|certs| certs.first().and_then(|der| principals.by_certificate(der)));
        let caller = match request.metadata().get("authorization") {
            Some(header) => {
                let token = header.to_str().ok().and_then(bearer_token).ok_or_else(|| {
                    unauthenticated("authorization must be `Bearer <token>`".to_owned())
                })?;
                let caller =
                    principals.authenticate(token, SystemTime::now()).map_err(|why| unauthenticated(why.to_string()))?;
                if by_cert.as_ref().is_some_and(|c| c.id != caller.id) {
                    return Err(unauthenticated(
                        "the token and the client certificate belong to different principals".to_owned(),
                    ));
                }
                caller
            }
            None => by_cert.ok_or_else(|| {
                unauthenticated(
                    "missing authorization metadata; send `authorization: Bearer <token>` or a client certificate that maps to a principal"
                        .to_owned(),
                )
            })?,
        };
        request.extensions_mut().insert(caller);
        request.extensions_mut().insert(Arc::clone(&self.limiter));
        Ok(request)
    }
}

/// The token of an `authorization` value: the scheme is case-insensitive (RFC 7235), one or
/// more spaces follow it.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn unauthenticated(why: String) -> Status {
    status(Reason::Unauthenticated, why, Vec::new(), None)
}

/// The caller, with one of `roles`.
pub fn require<T>(request: &Request<T>, roles: &[Role]) -> Result<Caller, Status> {
    let caller =
        request.extensions().get::<Caller>().ok_or_else(|| unauthenticated("no principal on the request".into()))?;
    if !roles.contains(&caller.role()) {
        let allowed: Vec<String> = roles.iter().map(ToString::to_string).collect();
        return Err(status(
            Reason::RoleNotAllowed,
            format!("role {} may not call this; allowed: {}", caller.role(), allowed.join(", ")),
            vec![("role", caller.role().to_string())],
            None,
        ));
    }
    Ok(caller.clone())
}

/// The caller of a call that changes something, with one of `roles`, once its rate limit lets
/// the call through; otherwise RESOURCE_EXHAUSTED (`RATE_LIMITED`) with the wait in
/// `retry_after_ms` and a `google.rpc.RetryInfo`.
pub fn admit_change<T>(request: &Request<T>, roles: &[Role]) -> Result<Caller, Status> {
    let caller = require(request, roles)?;
    if let Some(limiter) = request.extensions().get::<Arc<RateLimiter>>()
        && let Err(wait) = limiter.admit(caller.id)
    {
        let ms = wait.as_millis().max(1);
        let mut details = ErrorDetails::with_error_info(
            Reason::RateLimited.code(),
            ERROR_DOMAIN,
            [("retry_after_ms".to_owned(), ms.to_string())],
        );
        details.set_retry_info(Some(wait));
        let message =
            format!("{}: too many changing calls from this principal; retry after {ms} ms", Reason::RateLimited);
        return Err(Status::with_error_details(code_of(Reason::RateLimited), message, details));
    }
    Ok(caller)
}

/// The enterprise a bidder acts for; it is the only source of bidder identity.
pub fn bidder<T>(request: &Request<T>) -> Result<CreditCode, Status> {
    let caller = require(request, &[Role::Bidder])?;
    caller
        .principal
        .enterprise
        .ok_or_else(|| status(Reason::NoEnterprise, "this bidder token has no enterprise", Vec::new(), None))
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }
}
