//! Calling admission webhooks the way kube-apiserver does.
