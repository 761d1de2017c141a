//! Authorization, decided in one place: may this principal do this to that target?
//!
//! Every REST route, every action over the Actions Registry and every CLI command (a client of
//! the REST API) asks here. The rules, in order:
//! 1. What a caller may not see does not exist for them: [`Denied::NotFound`], the same answer
//!    as a target that is absent, so neither its existence, owner nor status leaks.
//! 2. The anonymous caller (a local trial on loopback) reads and orders, and changes nothing:
//!    [`Denied::Unauthenticated`].
//! 3. A visible target the caller may still not act on: [`Denied::Forbidden`], with a reason
//!    that names only what the caller can already see.
//!
//! Visibility: platform-admins see everything; everyone else sees their teams' requests and
//! resources and the requests they placed themselves. A Backstage plugin calling without a
//! user gets exactly the roles and groups configuration grants its subject (`plugin:<id>`), no
//! more; the anonymous caller belongs to no team, so it sees only its own requests.

use std::collections::BTreeSet;

use crate::vocab::principal::{Principal, Role};

/// Whose requests and resources a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Platform-admins.
    All,
    /// These teams' (owner refs), plus requests placed by `requester`.
    Only {
        teams: BTreeSet<String>,
        requester: String,
    },
}

/// Sees nothing: the safe default for a filter nobody filled in.
impl Default for Scope {
    fn default() -> Self {
        Self::Only {
            teams: BTreeSet::new(),
            requester: String::new(),
        }
    }
}

impl Scope {
    pub fn of(who: &Principal) -> Self {
        if who.is_admin() {
            Self::All
        } else {
            Self::Only {
                teams: who.groups.clone(),
                requester: who.subject.clone(),
            }
        }
    }

    /// The teams, or `None` for all of them.
    pub fn teams(&self) -> Option<&BTreeSet<String>> {
        match self {
            Self::All => None,
            Self::Only { teams, .. } => Some(teams),
        }
    }

    pub fn requester(&self) -> Option<&str> {
        match self {
            Self::All => None,
            Self::Only { requester, .. } => Some(requester),
        }
    }

    pub fn covers_team(&self, owner: &str) -> bool {
        self.teams().is_none_or(|t| t.contains(owner))
    }
}

/// Why not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Invisible to the caller: answered exactly like an absent target.
    #[error("not found")]
    NotFound,
    /// The anonymous caller tried something that needs a name.
    #[error("{0} needs an authenticated caller")]
    Unauthenticated(&'static str),
    /// Visible, but not the caller's to do.
    #[error("{0}")]
    Forbidden(String),
}

/// What is being done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Act<'a> {
    /// See it: a request, its logs and approvals; a resource, its cost and drift; a team's
    /// spend and budget.
    Read,
    /// Order a new resource for the team.
    Order,
    /// Update, extend its TTL, check or resolve its drift.
    Change,
    /// Delete; production resources are protected unless a platform-admin overrides.
    Delete {
        production: bool,
        override_protection: bool,
    },
    ReadCredentials,
    /// Cancel a request (its requester may too).
    Cancel,
    /// Approve or reject an approval that asks for `role`.
    Decide {
        role: &'a str,
    },
    SetBudget,
    /// Platform-wide reports and metrics.
    ReadPlatform,
}

/// The thing acted on.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// A team, by owner ref (`group:default/team-a`).
    Team(&'a str),
    Resource {
        owner: &'a str,
    },
    Request {
        owner: &'a str,
        requester: &'a str,
    },
    /// The whole platform (reports, metrics).
    Platform,
}

impl Target<'_> {
    fn owner(&self) -> Option<&str> {
        match self {
            Self::Team(o) | Self::Resource { owner: o } | Self::Request { owner: o, .. } => Some(o),
            Self::Platform => None,
        }
    }
}

/// May `who` see `target`?
pub fn may_see(who: &Principal, target: Target<'_>) -> bool {
    let scope = Scope::of(who);
    match target {
        Target::Platform => true,
        Target::Request { owner, requester } => {
            scope.covers_team(owner) || scope.requester() == Some(requester)
        }
        Target::Team(owner) | Target::Resource { owner } => scope.covers_team(owner),
    }
}

/// The one decision: `Ok` when `who` may `act` on `target`.
pub fn authorize(who: &Principal, act: Act<'_>, target: Target<'_>) -> Result<(), Denied> {
    // Ordering names the team itself, so refusing it reveals nothing.
    if act != Act::Order && !may_see(who, target) {
        return Err(Denied::NotFound);
    }
    let member = target
        .owner()
        .is_some_and(|o| who.is_admin() || who.member_of(o));
    let owner = target.owner().unwrap_or("the team");
    let needs_name = |what: &'static str| {
        if who.is_anonymous() {
            Err(Denied::Unauthenticated(what))
        } else {
            Ok(())
        }
    };
    match act {
        Act::Read => Ok(()),
        Act::Order => {
            // The anonymous caller orders only on a local trial (see `auth.allow_anonymous`).
            if who.is_anonymous() || member {
                Ok(())
            } else {
                Err(Denied::Forbidden(format!(
                    "{} is not a member of {owner} and may not order for it",
                    who.subject
                )))
            }
        }
        Act::Change | Act::ReadCredentials => {
            needs_name(if act == Act::Change {
                "changing a resource"
            } else {
                "reading credentials"
            })?;
            if member {
                Ok(())
            } else {
                Err(Denied::Forbidden(format!(
                    "only members of {owner} and platform-admins may do this"
                )))
            }
        }
        Act::Delete {
            production,
            override_protection,
        } => {
            needs_name("deleting a resource")?;
            if !member {
                return Err(Denied::Forbidden(format!(
                    "only members of {owner} and platform-admins may delete this resource"
                )));
            }
            if production && !(who.is_admin() && override_protection) {
                return Err(Denied::Forbidden(
                    "deletion protection: production resources are deleted only by a platform-admin with override=true".into(),
                ));
            }
            Ok(())
        }
        Act::Cancel => {
            needs_name("cancelling a request")?;
            let requester =
                matches!(target, Target::Request { requester, .. } if requester == who.subject);
            if member || requester {
                Ok(())
            } else {
                Err(Denied::Forbidden(format!(
                    "only the requester, members of {owner} and platform-admins may cancel it"
                )))
            }
        }
        Act::Decide { role } => {
            needs_name("deciding an approval")?;
            if matches!(target, Target::Request { requester, .. } if requester == who.subject) {
                return Err(Denied::Forbidden(
                    "nobody approves or rejects their own request".into(),
                ));
            }
            if may_decide(who, role, owner) {
                Ok(())
            } else if role == "lead" {
                Err(Denied::Forbidden(format!(
                    "this approval needs a lead of {owner} or a platform-admin"
                )))
            } else {
                Err(Denied::Forbidden(format!(
                    "this approval needs a {role}; only a {role} may give it"
                )))
            }
        }
        Act::SetBudget => {
            needs_name("setting a budget")?;
            if who.is_admin() {
                Ok(())
            } else {
                Err(Denied::Forbidden("only platform-admins set budgets".into()))
            }
        }
        Act::ReadPlatform => {
            needs_name("reading platform reports")?;
            if who.is_admin() {
                Ok(())
            } else {
                Err(Denied::Forbidden(
                    "platform reports are for platform-admins".into(),
                ))
            }
        }
    }
}

/// May `who` decide an approval that asks for `role` on a request owned by `owner`?
/// Admins decide everything; leads decide within their own teams.
pub fn may_decide(who: &Principal, role: &str, owner: &str) -> bool {
    // An approval rule naming a role paved does not know is decided by admins only.
    let Ok(role) = role.parse::<Role>() else {
        return who.is_admin();
    };
    who.is_admin() || (who.has_role(role) && (role != Role::Lead || who.member_of(owner)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(subject: &str, roles: &[&str], groups: &[&str]) -> Principal {
        Principal {
            subject: subject.into(),
            roles: roles.iter().map(|r| r.parse().unwrap()).collect(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            via: None,
        }
    }

    const TEAM_A: &str = "group:default/team-a";

    #[test]
    fn what_a_caller_may_not_see_is_not_found_before_anything_else() {
        let other = person(
            "user:default/b",
            &["developer", "lead"],
            &["group:default/team-b"],
        );
        let req = Target::Request {
            owner: TEAM_A,
            requester: "user:default/a",
        };
        for act in [
            Act::Read,
            Act::Cancel,
            Act::Decide { role: "lead" },
            Act::Change,
        ] {
            assert_eq!(
                authorize(&other, act, req),
                Err(Denied::NotFound),
                "{act:?}"
            );
        }
        assert_eq!(
            authorize(&other, Act::Read, Target::Team(TEAM_A)),
            Err(Denied::NotFound)
        );
    }

    #[test]
    fn anonymous_and_ungranted_plugins_belong_to_no_team() {
        let anon = Principal::anonymous();
        let plugin = person("plugin:scaffolder", &[], &[]);
        for who in [&anon, &plugin] {
            assert!(!may_see(who, Target::Resource { owner: TEAM_A }));
            assert!(!may_see(who, Target::Team(TEAM_A)));
        }
        // Only its own requests.
        assert!(may_see(
            &anon,
            Target::Request {
                owner: TEAM_A,
                requester: "anonymous"
            }
        ));
        assert_eq!(
            authorize(
                &anon,
                Act::Cancel,
                Target::Request {
                    owner: TEAM_A,
                    requester: "anonymous"
                }
            ),
            Err(Denied::Unauthenticated("cancelling a request"))
        );
    }

    #[test]
    fn members_act_leads_decide_for_their_team_admins_everywhere() {
        let lead = person("user:default/l", &["developer", "lead"], &[TEAM_A]);
        let admin = person("user:default/adm", &["platform-admin"], &[]);
        let req = Target::Request {
            owner: TEAM_A,
            requester: "user:default/a",
        };
        assert_eq!(authorize(&lead, Act::Decide { role: "lead" }, req), Ok(()));
        assert!(matches!(
            authorize(&lead, Act::Decide { role: "platform-admin" }, req),
            Err(Denied::Forbidden(m)) if m.contains("platform-admin")
        ));
        assert_eq!(
            authorize(
                &admin,
                Act::Decide {
                    role: "platform-admin"
                },
                req
            ),
            Ok(())
        );
        let prod = Act::Delete {
            production: true,
            override_protection: false,
        };
        let res = Target::Resource { owner: TEAM_A };
        assert!(matches!(
            authorize(&lead, prod, res),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            authorize(&admin, prod, res),
            Err(Denied::Forbidden(_))
        ));
        let overridden = Act::Delete {
            production: true,
            override_protection: true,
        };
        assert_eq!(authorize(&admin, overridden, res), Ok(()));
        assert_eq!(
            authorize(&lead, Act::SetBudget, Target::Team(TEAM_A)),
            Err(Denied::Forbidden("only platform-admins set budgets".into()))
        );
    }

    #[test]
    fn nobody_decides_their_own_request() {
        let admin = person("user:default/adm", &["platform-admin"], &[]);
        let own = Target::Request {
            owner: TEAM_A,
            requester: "user:default/adm",
        };
        assert!(matches!(
            authorize(&admin, Act::Decide { role: "lead" }, own),
            Err(Denied::Forbidden(_))
        ));
    }
}
