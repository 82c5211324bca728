//! `/openapi/v2`: the Swagger 2.0 document, as JSON or as the gnostic protobuf kubectl asks
//! for. kubectl reads it to check a `kind: List`'s items client-side (their kind has no
//! OpenAPI v3 path to tell it the server validates fields). The document carries no
//! definitions, so kubectl skips that client-side check and the server validates each item
//! as it is applied, as for any other object.

use serde_json::{Value, json};

const TITLE: &str = "Kubernetes";
const VERSION: &str = "v1.34.0";

/// The media type kubectl's discovery client asks for, and the server answers with.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

pub fn json() -> Value {
    json!({"swagger": "2.0", "info": {"title": TITLE, "version": VERSION}, "paths": {}, "definitions": {}})
}

/// gnostic `openapi_v2.Document{swagger: "2.0", info: {title, version}}`.
pub fn protobuf() -> Vec<u8> {
    let mut info = Vec::new();
    field(&mut info, 1, TITLE.as_bytes());
    field(&mut info, 2, VERSION.as_bytes());
    let mut doc = Vec::new();
    field(&mut doc, 1, b"2.0");
    field(&mut doc, 2, &info);
    doc
}

/// One length-delimited field (wire type 2).
fn field(out: &mut Vec<u8>, number: u8, bytes: &[u8]) {
    out.push(number << 3 | 2);
    let mut n = bytes.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_document_is_swagger_with_info() {
        let doc = protobuf();
        assert_eq!(&doc[..5], b"\x0a\x032.0");
        assert_eq!(doc[5], 0x12);
        assert_eq!(doc[6] as usize, doc.len() - 7);
        assert_eq!(&doc[7..9], &[0x0a, TITLE.len() as u8]);
    }
}
