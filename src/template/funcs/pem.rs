//! ESO's PEM and certificate functions: `filterPEM`, `filterCertChain` and `certSANs`,
//! with Go's `encoding/pem` decoding rules; also the PEM codec the key and PKCS#12
//! functions use.
//!
//! Errors say what is wrong with the input, never what the input holds.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gotmpl::Value;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::args::{Plain, exec, s, strv, want};

pub(super) fn functions() -> Vec<(&'static str, Plain)> {
    vec![
        ("filterPEM", |a| {
            want(a, "filterPEM", 2, 2)?;
            filter_pem(strv(&a[0], "filterPEM")?, strv(&a[1], "filterPEM")?)
                .map(s)
                .map_err(|e| exec(format!("filterPEM: {e}")))
        }),
        ("filterCertChain", |a| {
            want(a, "filterCertChain", 2, 2)?;
            filter_cert_chain(
                strv(&a[0], "filterCertChain")?,
                strv(&a[1], "filterCertChain")?,
            )
            .map(s)
            .map_err(|e| exec(format!("filterCertChain: {e}")))
        }),
        ("certSANs", |a| {
            want(a, "certSANs", 1, 1)?;
            cert_sans(strv(&a[0], "certSANs")?)
                .map(|v| Value::List(v.into_iter().map(s).collect()))
                .map_err(|e| exec(format!("certSANs: {e}")))
        }),
    ]
}

pub(crate) struct Block {
    kind: String,
    headers: Vec<(String, String)>,
    bytes: Vec<u8>,
}

/// Decodes every PEM block Go's `pem.Decode` loop would find; also returns whether
/// anything but whitespace-free line endings follows the last block (Go's `rest`).
fn decode_all(input: &str) -> (Vec<Block>, bool) {
    let mut blocks = Vec::new();
    let mut data = input;
    loop {
        match decode(data) {
            Some((b, rest)) => {
                blocks.push(b);
                data = rest;
            }
            None => return (blocks, !data.is_empty()),
        }
    }
}

/// One `pem.Decode`: skips to the first well-formed block; None when there is none.
fn decode(mut data: &str) -> Option<(Block, &str)> {
    loop {
        // As in Go, a block starts at the start of the input or of a line.
        let start = if data.starts_with("-----BEGIN ") {
            0
        } else {
            data.find("\n-----BEGIN ")? + 1
        };
        let after = &data[start + "-----BEGIN ".len()..];
        let (line, rest) = after.split_once('\n').unwrap_or((after, ""));
        let line = line.strip_suffix('\r').unwrap_or(line);
        let Some(kind) = line.strip_suffix("-----") else {
            data = after;
            continue;
        };
        let end_marker = format!("-----END {kind}-----");
        let Some(end) = rest.find(&end_marker) else {
            data = after;
            continue;
        };
        let body = &rest[..end];
        let mut tail = &rest[end + end_marker.len()..];
        // The END line must end the line (Go: only whitespace may follow on it).
        let (end_line, after_end) = tail.split_once('\n').unwrap_or((tail, ""));
        if !end_line.trim().is_empty() {
            data = after;
            continue;
        }
        tail = after_end;

        let mut headers = Vec::new();
        let mut b64 = String::new();
        let mut in_headers = true;
        for l in body.lines() {
            if in_headers {
                if let Some((k, v)) = l.split_once(':') {
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                    continue;
                }
                in_headers = false;
                if l.trim().is_empty() && !headers.is_empty() {
                    continue;
                }
            }
            b64.extend(l.chars().filter(|c| !c.is_whitespace()));
        }
        match B64.decode(b64.as_bytes()) {
            Ok(bytes) => {
                return Some((
                    Block {
                        kind: kind.to_string(),
                        headers,
                        bytes,
                    },
                    tail,
                ));
            }
            Err(_) => {
                data = after;
                continue;
            }
        }
    }
}

/// Go's `pem.Encode`: headers (Proc-Type first, the rest sorted), 64-column base64.
fn encode(b: &Block) -> String {
    let mut out = format!("-----BEGIN {}-----\n", b.kind);
    if !b.headers.is_empty() {
        let mut hs = b.headers.clone();
        hs.sort_by(|x, y| (x.0 != "Proc-Type", &x.0).cmp(&(y.0 != "Proc-Type", &y.0)));
        for (k, v) in hs {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
    }
    let text = B64.encode(&b.bytes);
    for chunk in text.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {}-----\n", b.kind));
    out
}

/// `filterPEM TYPE INPUT`: every block of that type (case-insensitive), re-encoded.
pub(crate) fn filter_pem(kind: &str, input: &str) -> Result<String, String> {
    let input = input.find("-----BEGIN").map_or(input, |i| &input[i..]);
    let (blocks, junk_left) = decode_all(input);
    let out: String = blocks
        .iter()
        .filter(|b| b.kind.eq_ignore_ascii_case(kind))
        .map(encode)
        .collect();
    if out.is_empty() && junk_left {
        return Err("error filtering pem: found junk".into());
    }
    Ok(out)
}

struct Cert {
    der: Vec<u8>,
    ski: Vec<u8>,
    aki: Vec<u8>,
}

fn parse_certs(input: &str) -> Result<Vec<Cert>, String> {
    let (blocks, _) = decode_all(input);
    let ders: Vec<Vec<u8>> = blocks.into_iter().map(|b| b.bytes).collect();
    certs_of(&ders, "PEM block")
}

fn certs_of(ders: &[Vec<u8>], what: &str) -> Result<Vec<Cert>, String> {
    let mut out = Vec::new();
    for (i, der) in ders.iter().enumerate() {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|_| format!("{what} {} is not an X.509 certificate", i + 1))?;
        let mut ski = Vec::new();
        let mut aki = Vec::new();
        for ext in cert.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => ski = k.0.to_vec(),
                ParsedExtension::AuthorityKeyIdentifier(a) => {
                    if let Some(k) = &a.key_identifier {
                        aki = k.0.to_vec();
                    }
                }
                _ => {}
            }
        }
        out.push(Cert {
            der: der.clone(),
            ski,
            aki,
        });
    }
    Ok(out)
}

/// Orders the certificates leaf → intermediates → root by key identifiers (no trust
/// check, as in ESO).
fn chain(certs: &[Cert]) -> Result<Vec<usize>, String> {
    let n = certs.len();
    let mut parent: Vec<Option<usize>> = vec![None; n];
    let mut is_parent = vec![false; n];
    for i in 0..n {
        for j in 0..n {
            if i != j && certs[i].aki == certs[j].ski {
                is_parent[j] = true;
                parent[i] = Some(j);
                break;
            }
        }
    }
    let mut leaf = None;
    for (i, p) in is_parent.iter().enumerate() {
        if !p {
            if leaf.is_some() {
                return Err("found multiple leaf or disjunct certificates".into());
            }
            leaf = Some(i);
        }
    }
    let mut cur = leaf.ok_or("no leaf certificate found")?;
    let mut ordered = vec![cur];
    while let Some(p) = parent[cur] {
        if ordered.len() >= n {
            return Err("constructing chain resulted in cycle".into());
        }
        ordered.push(p);
        cur = p;
    }
    Ok(ordered)
}

fn is_root(c: &Cert) -> bool {
    c.aki.is_empty() || c.aki == c.ski
}

fn cert_pem(c: &Cert) -> String {
    encode(&Block {
        kind: "CERTIFICATE".into(),
        headers: Vec::new(),
        bytes: c.der.clone(),
    })
}

/// Go's `pem.Decode`: the type and bytes of the first block, and the text after it.
pub(crate) fn decode_one(input: &str) -> Option<(String, Vec<u8>, &str)> {
    decode(input).map(|(b, rest)| (b.kind, b.bytes, rest))
}

/// Go's `pem.Encode` of one block without headers.
pub(crate) fn encode_der(kind: &str, der: &[u8]) -> String {
    encode(&Block {
        kind: kind.to_string(),
        headers: Vec::new(),
        bytes: der.to_vec(),
    })
}

/// ESO's `fetchCertChains`: the certificates as PEM, ordered leaf → root by key
/// identifiers; an error when they do not form one chain.
pub(crate) fn ordered_chain(ders: &[Vec<u8>]) -> Result<String, String> {
    let certs = certs_of(ders, "certificate")?;
    Ok(chain(&certs)?
        .into_iter()
        .map(|i| cert_pem(&certs[i]))
        .collect())
}

/// ESO's `certSANs`: the first certificate's DNS names, IP addresses, e-mail addresses
/// and URIs, in that order, as Go's `x509` lists them.
pub(crate) fn cert_sans(input: &str) -> Result<Vec<String>, String> {
    let (_, der, _) = decode_one(input).ok_or("failed to decode PEM block")?;
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| format!("failed to parse certificate: {e}"))?;
    let (mut dns, mut ips, mut mails, mut uris) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(n) => dns.push(n.to_string()),
                    GeneralName::RFC822Name(n) => mails.push(n.to_string()),
                    GeneralName::URI(n) => uris.push(n.to_string()),
                    GeneralName::IPAddress(b) => ips.push(go_ip(b)),
                    _ => {}
                }
            }
        }
    }
    Ok([dns, ips, mails, uris].concat())
}

/// Go's `net.IP.String()`: IPv4 (also IPv4-mapped IPv6) dotted, IPv6 in RFC 5952 form.
fn go_ip(b: &[u8]) -> String {
    match b.len() {
        4 => std::net::Ipv4Addr::new(b[0], b[1], b[2], b[3]).to_string(),
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(b);
            let v6 = std::net::Ipv6Addr::from(a);
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => v6.to_string(),
            }
        }
        _ => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("?{hex}")
        }
    }
}

/// `filterCertChain leaf|intermediate|root INPUT`.
pub(crate) fn filter_cert_chain(kind: &str, input: &str) -> Result<String, String> {
    let certs = parse_certs(input)?;
    if certs.is_empty() {
        return Err("no leaf certificate found".into());
    }
    let ordered = chain(&certs)?;
    let at = |i: usize| &certs[ordered[i]];
    Ok(match kind {
        "leaf" => {
            let c = at(0);
            if !c.aki.is_empty() && c.aki != c.ski {
                cert_pem(c)
            } else {
                String::new()
            }
        }
        "intermediate" => ordered[1..]
            .iter()
            .map(|&i| &certs[i])
            .take_while(|c| !is_root(c))
            .map(cert_pem)
            .collect(),
        "root" => {
            let c = at(ordered.len() - 1);
            if is_root(c) {
                cert_pem(c)
            } else {
                String::new()
            }
        }
        _ => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n";
    const CERT: &str = "-----BEGIN CERTIFICATE-----\nAwQF\n-----END CERTIFICATE-----\n";

    #[test]
    fn filter_pem_keeps_blocks_of_one_type() {
        let input = format!("junk before\n{KEY}{CERT}");
        assert_eq!(filter_pem("CERTIFICATE", &input).unwrap(), CERT);
        assert_eq!(filter_pem("private key", &input).unwrap(), KEY);
        assert_eq!(filter_pem("EC PRIVATE KEY", &input).unwrap(), "");
        assert!(filter_pem("CERTIFICATE", "not pem at all").is_err());
        assert_eq!(filter_pem("CERTIFICATE", "").unwrap(), "");
    }

    #[test]
    fn encode_wraps_at_64_columns() {
        let b = Block {
            kind: "X".into(),
            headers: vec![],
            bytes: vec![0u8; 60],
        };
        let text = encode(&b);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1].len(), 64);
        assert_eq!(lines[2].len(), 16);
        let (back, _) = decode_all(&text);
        assert_eq!(back[0].bytes, vec![0u8; 60]);
    }
}
