//! [`Caller`]: who a request acts for — the tenant whose images, jobs, chats and collections it sees and
//! makes, and its key's scope. The HTTP layer finds it (an API key, or nobody when authentication is off);
//! services only ask it what to show and whom to record as owner.

use lens_store::{Scope, Visible};

/// Who is asking.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The API key's id (`key_…`); `None` with authentication off.
    pub key: Option<String>,
    /// The key's tenant; `None` with authentication off (then everything is shared, as before keys).
    pub tenant: Option<String>,
    pub scope: Scope,
}

impl Caller {
    /// A request with authentication off: sees everything, owns nothing, may do anything.
    pub fn anonymous() -> Caller {
        Caller { key: None, tenant: None, scope: Scope::Admin }
    }

    /// What this caller reads: an admin's (or, with authentication off, everyone's) view is everything;
    /// another key's is its tenant's.
    pub fn visible(&self) -> Visible<'_> {
        match (&self.tenant, self.scope) {
            (Some(tenant), Scope::Read | Scope::Write) => Visible::To(tenant),
            _ => Visible::All,
        }
    }

    /// The tenant recorded as owner of what this caller makes.
    pub fn owner(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// Whether the caller's scope covers `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.scope >= scope
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admins_and_anonymous_callers_see_everything_other_keys_their_tenant() {
        let key = |scope| Caller { key: Some("key_1".into()), tenant: Some("acme".into()), scope };
        assert_eq!(key(Scope::Read).visible(), Visible::To("acme"));
        assert_eq!(key(Scope::Write).visible(), Visible::To("acme"));
        assert_eq!(key(Scope::Admin).visible(), Visible::All);
        assert_eq!(key(Scope::Admin).owner(), Some("acme"));
        assert_eq!(Caller::anonymous().visible(), Visible::All);
        assert_eq!(Caller::anonymous().owner(), None);
        assert!(key(Scope::Write).may(Scope::Read) && !key(Scope::Write).may(Scope::Admin));
    }
}
