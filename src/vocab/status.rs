//! The states of requests, their steps, resources and approvals, and the operations requests
//! perform: as stored (each as its snake_case name; `db` maps them onto text columns) and as
//! the API shows them.

use serde::{Deserialize, Serialize};

/// An enum of named states, its stored name per variant, and `parse` back. One list per
/// enum, so the names cannot drift apart from the variants.
macro_rules! states {
    ($(#[$meta:meta])* pub enum $name:ident { $($(#[$vmeta:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &[Self] = &[$(Self::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }

            /// The state a stored name stands for; `None` for a name paved does not know.
            pub fn parse(s: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

states! {
    /// Where a request stands. Stored as its snake_case name.
    pub enum RequestStatus {
        /// Stored and waiting for the provisioning engine.
        Pending => "pending",
        AwaitingApproval => "awaiting_approval",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
        Denied => "denied",
        Rejected => "rejected",
        Cancelled => "cancelled",
    }
}

impl RequestStatus {
    /// Not finished: a request in one of these may still change its resource.
    pub const OPEN: [Self; 3] = [Self::Pending, Self::AwaitingApproval, Self::Running];

    /// Nothing will change this request any more (the engine, a decision or a cancel).
    pub fn is_final(self) -> bool {
        !Self::OPEN.contains(&self)
    }
}

states! {
    /// What a request does to its resource.
    pub enum Operation {
        Create => "create",
        Update => "update",
        Delete => "delete",
    }
}

states! {
    /// Where one recorded step of a request stands.
    pub enum StepStatus {
        Pending => "pending",
        Running => "running",
        Succeeded => "succeeded",
        /// Failed with a transient error; the job runs it again.
        Retrying => "retrying",
        Failed => "failed",
        /// Interrupted by the request's cancel while its driver call ran.
        Cancelled => "cancelled",
    }
}

states! {
    /// Where a provisioned resource stands.
    pub enum ResourceStatus {
        Provisioning => "provisioning",
        Ready => "ready",
        Failed => "failed",
        Deleting => "deleting",
        Deleted => "deleted",
    }
}

states! {
    /// Where one approval a request waits for stands.
    pub enum ApprovalStatus {
        Pending => "pending",
        Approved => "approved",
        Rejected => "rejected",
        /// No longer asked for: its request was cancelled, or rejected by another approver.
        Cancelled => "cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored name is the serde name too: the API shows what the database holds.
    #[test]
    fn stored_names_are_the_serde_names_and_parse_back() {
        fn check<T: Serialize + Copy + PartialEq + std::fmt::Debug>(
            all: &[T],
            name: impl Fn(T) -> &'static str,
            parse: impl Fn(&str) -> Option<T>,
        ) {
            for v in all {
                assert_eq!(serde_json::to_value(v).unwrap(), name(*v));
                assert_eq!(parse(name(*v)), Some(*v));
            }
            assert_eq!(parse("no-such-state"), None);
        }
        check(
            RequestStatus::ALL,
            RequestStatus::as_str,
            RequestStatus::parse,
        );
        check(Operation::ALL, Operation::as_str, Operation::parse);
        check(StepStatus::ALL, StepStatus::as_str, StepStatus::parse);
        check(
            ResourceStatus::ALL,
            ResourceStatus::as_str,
            ResourceStatus::parse,
        );
        check(
            ApprovalStatus::ALL,
            ApprovalStatus::as_str,
            ApprovalStatus::parse,
        );
    }
}
