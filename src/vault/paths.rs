//! Vault paths of KV secrets, as ESO builds them, and the key safety rule.

use crate::api::VaultKvVersion;

/// Longest remote key accepted. Vault sets no limit of its own, but a key is part of a URL and
/// of every error message about it: far beyond any real secret path, far below what breaks those.
pub const MAX_KEY_LEN: usize = 4096;

/// Characters of a value that messages show before cutting it short.
const SHOWN: usize = 64;

/// A value from a manifest as messages show it: quoted and escaped like `{:?}`, and cut after
/// its first 64 characters (saying how long it is), so a huge value cannot make a huge message.
pub fn quoted(s: &str) -> String {
    match s.char_indices().nth(SHOWN) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
    }
}

/// Refuses remote keys that could leave the KV mount or confuse path handling: empty keys,
/// absurdly long ones, a leading `/`, NUL bytes, `.`/`..` segments and keys aimed at Vault's
/// `sys/` or `auth/`.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the remote key is empty".into());
    }
    // Quoted only for a message: every admission review checks its keys, and formatting them
    // up front was a tenth of the webhook's own work per review.
    let shown = || quoted(key);
    if key.len() > MAX_KEY_LEN {
        return Err(format!(
            "the remote key {} is longer than {MAX_KEY_LEN} bytes",
            shown()
        ));
    }
    if key.contains('\0') {
        return Err(format!("the remote key {} contains a NUL byte", shown()));
    }
    if key.starts_with('/') {
        return Err(format!(
            "the remote key {} starts with \"/\": give it relative to the store's mount",
            shown()
        ));
    }
    if key.split('/').any(|seg| seg == ".." || seg == ".") {
        return Err(format!(
            "the remote key {} contains a \".\" or \"..\" segment",
            shown()
        ));
    }
    for reserved in ["sys", "auth"] {
        if key
            .strip_prefix(reserved)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        {
            return Err(format!(
                "the remote key {} points into Vault's {reserved}/ API, not at a secret",
                shown()
            ));
        }
    }
    Ok(())
}

/// The mount of `spec.provider.vault.path`, without surrounding slashes (`None` when unset or
/// empty).
pub fn mount_of(path: Option<&str>) -> Option<String> {
    let m = path?.trim_matches('/');
    (!m.is_empty()).then(|| m.to_string())
}

/// A key relative to `mount`: ESO strips a leading `<mount>/` (and, on v2, a following
/// `data/`) so that keys written with the mount are not doubled.
fn relative<'a>(mount: &str, version: VaultKvVersion, key: &'a str) -> &'a str {
    match key.strip_prefix(mount).and_then(|r| r.strip_prefix('/')) {
        Some(rest) if version == VaultKvVersion::V2 => rest.strip_prefix("data/").unwrap_or(rest),
        Some(rest) => rest,
        None => key,
    }
}

/// The path (after `/v1/`) to read a secret: v2 `<mount>/data/<key>`, v1 `<mount>/<key>`.
///
/// Without a mount the key carries it: on v2 `data` is inserted after the first segment unless
/// the key already contains `/data/` (ESO's rule).
pub fn data_path(mount: Option<&str>, version: VaultKvVersion, key: &str) -> String {
    match mount {
        Some(m) => {
            let rest = relative(m, version, key);
            match version {
                VaultKvVersion::V2 => format!("{m}/data/{rest}"),
                VaultKvVersion::V1 => format!("{m}/{rest}"),
            }
        }
        None => {
            if version == VaultKvVersion::V1 || key.contains("/data/") {
                return key.to_string();
            }
            match key.split_once('/') {
                Some((first, rest)) => format!("{first}/data/{rest}"),
                None => format!("{key}/data"),
            }
        }
    }
}

/// The path of a v2 secret's metadata: `<mount>/metadata/<key>`.
pub fn metadata_path(mount: Option<&str>, key: &str) -> String {
    match mount {
        Some(m) => format!(
            "{m}/metadata/{}",
            relative(m, VaultKvVersion::V2, key).trim_start_matches('/')
        ),
        None => {
            if key.contains("/data/") {
                key.replacen("/data/", "/metadata/", 1)
            } else {
                match key.split_once('/') {
                    Some((first, rest)) => format!("{first}/metadata/{rest}"),
                    None => format!("{key}/metadata/"),
                }
            }
        }
    }
}

/// The metadata folder to LIST for `dataFrom.find.path` (always ends with `/`).
pub fn list_path(mount: &str, folder: &str) -> String {
    let folder = folder.trim_matches('/');
    if folder.is_empty() {
        format!("{mount}/metadata/")
    } else {
        format!("{mount}/metadata/{folder}/")
    }
}

/// A KV v2 version must be a positive integer.
pub fn check_version(version: &str) -> Result<(), String> {
    if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(format!(
            "version {} is not a KV v2 version number (use e.g. \"3\")",
            quoted(version)
        ))
    }
}

/// Percent-encodes a Vault path for a URL, keeping `/` and characters that are safe in a path
/// segment, so that `?`, `#`, `%` or spaces in secret names stay part of the name.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for b in path.bytes() {
        let keep = b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b);
        if keep {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use VaultKvVersion::{V1, V2};

    #[test]
    fn key_safety() {
        let cases: &[(&str, bool)] = &[
            ("app/db", true),
            ("app", true),
            ("app/..data/x", true),
            ("a b/c?d", true),
            ("secret/data/app", true),
            ("", false),
            ("/app", false),
            ("app/../other", false),
            ("..", false),
            ("app/..", false),
            ("secret/../sys/seal", false),
            ("./app", false),
            ("app\0x", false),
            ("sys/policies/acl/root", false),
            ("sys", false),
            ("auth", false),
            ("auth/token/create", false),
            ("system/x", true),
            ("authors/x", true),
            ("ключ/秘密", true),
            ("%2e%2e/sys", true),
            ("app\\..\\sys", true),
        ];
        for (key, ok) in cases {
            assert_eq!(check_key(key).is_ok(), *ok, "{key:?}: {:?}", check_key(key));
        }
        // Length: up to the limit, in bytes; messages show only the start of the key.
        let at_limit = "k".repeat(MAX_KEY_LEN);
        assert!(check_key(&at_limit).is_ok());
        for long in [
            format!("{at_limit}k"),
            "a/".repeat(50_000),
            "é".repeat(MAX_KEY_LEN / 2 + 1),
        ] {
            let e = check_key(&long).unwrap_err();
            assert!(e.contains("is longer than 4096 bytes"), "{e}");
            assert!(e.len() < 200, "{e}");
        }
        let e = check_key(&format!("/{}", "x".repeat(100_000))).unwrap_err();
        assert!(e.len() < 200 && e.contains("(100001 bytes)"), "{e}");
    }

    #[test]
    fn quoting_cuts_long_values() {
        assert_eq!(quoted("a\0b"), "\"a\\0b\"");
        assert_eq!(quoted(&"x".repeat(64)), format!("{:?}", "x".repeat(64)));
        assert_eq!(
            quoted(&"é".repeat(65)),
            format!("{:?}... (130 bytes)", "é".repeat(64))
        );
    }

    #[test]
    fn read_paths() {
        let cases: &[(Option<&str>, VaultKvVersion, &str, &str)] = &[
            (Some("secret"), V2, "app/db", "secret/data/app/db"),
            (Some("secret"), V2, "secret/app/db", "secret/data/app/db"),
            (
                Some("secret"),
                V2,
                "secret/data/app/db",
                "secret/data/app/db",
            ),
            // Not prefixed by the mount: a folder that happens to be called data.
            (Some("secret"), V2, "data/app", "secret/data/data/app"),
            (Some("secret"), V2, "app/data/x", "secret/data/app/data/x"),
            (Some("kv/team"), V2, "kv/team/app", "kv/team/data/app"),
            (Some("secret"), V1, "app/db", "secret/app/db"),
            (Some("secret"), V1, "secret/app/db", "secret/app/db"),
            (Some("secret"), V1, "secret/data/x", "secret/data/x"),
            (None, V2, "secret/app/db", "secret/data/app/db"),
            (None, V2, "secret/data/app/db", "secret/data/app/db"),
            (None, V2, "secret", "secret/data"),
            (None, V1, "kv/app", "kv/app"),
        ];
        for (mount, v, key, want) in cases {
            assert_eq!(data_path(*mount, *v, key), *want, "{mount:?} {v:?} {key}");
        }
    }

    #[test]
    fn metadata_paths() {
        let cases: &[(Option<&str>, &str, &str)] = &[
            (Some("secret"), "app/db", "secret/metadata/app/db"),
            (Some("secret"), "secret/app/db", "secret/metadata/app/db"),
            (Some("secret"), "secret/data/app", "secret/metadata/app"),
            (None, "secret/data/app", "secret/metadata/app"),
            (None, "secret/app", "secret/metadata/app"),
        ];
        for (mount, key, want) in cases {
            assert_eq!(metadata_path(*mount, key), *want, "{mount:?} {key}");
        }
        assert_eq!(list_path("secret", ""), "secret/metadata/");
        assert_eq!(list_path("secret", "/team/a/"), "secret/metadata/team/a/");
    }

    #[test]
    fn mounts_and_versions() {
        assert_eq!(mount_of(Some("/secret/")).as_deref(), Some("secret"));
        assert_eq!(mount_of(Some("")), None);
        assert_eq!(mount_of(None), None);
        for (v, ok) in [
            ("1", true),
            ("12", true),
            ("", false),
            ("-1", false),
            ("1&x=2", false),
        ] {
            assert_eq!(check_version(v).is_ok(), ok, "{v}");
        }
    }

    #[test]
    fn encoding() {
        let cases = [
            ("secret/data/app", "secret/data/app"),
            ("secret/data/a b", "secret/data/a%20b"),
            ("secret/data/x?version=1#y", "secret/data/x%3Fversion=1%23y"),
            ("secret/data/100%", "secret/data/100%25"),
            ("secret/data/é", "secret/data/%C3%A9"),
        ];
        for (p, want) in cases {
            assert_eq!(encode_path(p), want);
        }
    }
}
