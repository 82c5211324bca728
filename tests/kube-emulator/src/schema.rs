//! Structural-schema handling of CRD objects (defaulting, pruning, validation).

use serde_json::Value;

/// One validation failure, shaped like apimachinery's `field.Error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub message: String,
}

/// The `field.ErrorType` values the schema validator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldErrorKind {
    Required,
    NotSupported,
    Invalid,
    TypeInvalid,
    TooLong,
    TooMany,
    Forbidden,
}

impl FieldError {
    /// The `reason` kube puts in `status.details.causes[].reason`.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::TypeInvalid => "FieldValueTypeInvalid",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
        }
    }

    /// The text after `"<field>: "` in kube messages.
    pub fn detail(&self) -> String {
        self.message.clone()
    }
}

/// Applies a CRD version's openAPIV3Schema to a whole object in kube-apiserver's
/// order: prune unknown fields, default, validate.
pub fn default_prune_validate(_schema: &Value, _obj: &mut Value) -> Result<(), Vec<FieldError>> {
    Ok(())
}

/// `<Kind>.<group> "<name>" is invalid: [<field>: <detail>, ...]` as kube-apiserver formats it.
pub fn invalid_message(kind: &str, group: &str, name: &str, errs: &[FieldError]) -> String {
    let parts: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.field, e.detail()))
        .collect();
    let body = if parts.len() == 1 {
        parts[0].clone()
    } else {
        format!("[{}]", parts.join(", "))
    };
    format!("{kind}.{group} \"{name}\" is invalid: {body}")
}
