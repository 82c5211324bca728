//! Status conditions in the shape ESO writes them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One status condition (`Ready` on every kind; `Deleted` on ExternalSecrets).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
}

impl Condition {
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Finds the condition of a type.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Sets a condition, keeping `lastTransitionTime` when the status does not change (as the
/// Kubernetes API conventions ask).
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            if old.status == new.status {
                new.last_transition_time = old.last_transition_time.clone();
            }
            *old = new;
        }
        None => conditions.push(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(status: &str, reason: &str, t: Option<i64>) -> Condition {
        Condition {
            type_: "Ready".into(),
            status: status.into(),
            reason: Some(reason.into()),
            message: None,
            last_transition_time: t
                .map(|s| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap())),
        }
    }

    #[test]
    fn transition_time_kept_while_status_unchanged() {
        let mut cs = vec![cond("True", "SecretSynced", Some(100))];
        set(&mut cs, cond("True", "SecretSynced", Some(200)));
        assert_eq!(cs.len(), 1);
        assert_eq!(
            cs[0].last_transition_time,
            cond("True", "x", Some(100)).last_transition_time
        );
        set(&mut cs, cond("False", "SecretSyncedError", Some(300)));
        assert_eq!(cs[0].status, "False");
        assert_eq!(
            cs[0].last_transition_time,
            cond("True", "x", Some(300)).last_transition_time
        );
    }

    #[test]
    fn find_and_push() {
        let mut cs = vec![];
        assert!(find(&cs, "Ready").is_none());
        set(&mut cs, cond("True", "Valid", None));
        assert!(find(&cs, "Ready").unwrap().is_true());
    }
}
