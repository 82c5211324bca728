//! Leases of generated Vault credentials, beyond ESO (which never renews or revokes them): the
//! pure plan of what to do between syncs (`plan.rs`) and the record kept in the
//! ExternalSecret's status so that a restart loses none (`record.rs`).

pub mod plan;
pub mod record;

pub use plan::{
    Action, Current, Input, MAX_REVOKE_GRACE, Plan, REVOKE_GRACE_ANNOTATION, Superseded, plan,
    renewed, revoke_grace,
};
pub use record::{LeaseRecord, record_minted, record_renewed, record_revoked};
