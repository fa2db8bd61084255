//! Bearer-token authentication for the three API services. The interceptor resolves the
//! token to a [`Principal`] and leaves it in the request's extensions; handlers then check the
//! role. Health and reflection are mounted without it.

use std::sync::Arc;

use tonic::{Request, Status};

use crate::auth::{Principal, Principals, Role};
use crate::domain::{CreditCode, Reason};

use super::status::status;

#[derive(Clone)]
pub struct Authenticator {
    principals: Arc<Principals>,
}

impl Authenticator {
    pub fn new(principals: Principals) -> Authenticator {
        Authenticator { principals: Arc::new(principals) }
    }

    pub fn intercept(&self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let header = request
            .metadata()
            .get("authorization")
            .ok_or_else(|| unauthenticated("missing authorization metadata; send `authorization: Bearer <token>`"))?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| unauthenticated("authorization must be `Bearer <token>`"))?;
        let principal =
            self.principals.authenticate(token.trim()).ok_or_else(|| unauthenticated("unknown token"))?.clone();
        request.extensions_mut().insert(principal);
        Ok(request)
    }
}

fn unauthenticated(why: &str) -> Status {
    status(Reason::Unauthenticated, why, Vec::new(), None)
}

/// The caller, with one of `roles`.
pub fn require<T>(request: &Request<T>, roles: &[Role]) -> Result<Principal, Status> {
    let principal =
        request.extensions().get::<Principal>().ok_or_else(|| unauthenticated("no principal on the request"))?;
    if !roles.contains(&principal.role) {
        let allowed: Vec<String> = roles.iter().map(ToString::to_string).collect();
        return Err(status(
            Reason::RoleNotAllowed,
            format!("role {} may not call this; allowed: {}", principal.role, allowed.join(", ")),
            vec![("role", principal.role.to_string())],
            None,
        ));
    }
    Ok(principal.clone())
}

/// The enterprise a bidder acts for; it is the only source of bidder identity.
pub fn bidder<T>(request: &Request<T>) -> Result<CreditCode, Status> {
    let principal = require(request, &[Role::Bidder])?;
    principal
        .enterprise
        .ok_or_else(|| status(Reason::NoEnterprise, "this bidder token has no enterprise", Vec::new(), None))
}
