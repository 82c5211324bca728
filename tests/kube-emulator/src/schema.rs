//! Structural-schema handling of CRD objects (defaulting, pruning, validation).
