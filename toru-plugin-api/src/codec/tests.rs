//! Codec and message-shape tests, including property tests.

use bytes::{BufMut, Bytes, BytesMut};
use http::HeaderMap;
use proptest::prelude::*;
use tokio_util::codec::Decoder;

use super::*;
use crate::protocol::v2::Limits;

fn decode_all(bytes: &[u8]) -> Vec<Result<Frame, BadFrame>> {
    let mut codec = FrameCodec::new();
    let mut src = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(item) = codec.decode(&mut src).unwrap() {
        out.push(item);
    }
    out
}

fn raw_frame(header: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.put_u32((4 + header.len() + body.len()) as u32);
    v.put_u32(header.len() as u32);
    v.put_slice(header);
    v.put_slice(body);
    v
}

#[test]
fn ping_on_the_wire() {
    let bytes = encode_to_vec(&Frame::new(Message::Ping { id: 1 })).unwrap();
    let header = br#"{"type":"ping","id":1}"#;
    assert_eq!(bytes, raw_frame(header, b""));
    assert_eq!(&bytes[..8], &[0, 0, 0, 26, 0, 0, 0, 22]);
}

#[test]
fn frame_with_binary_body_round_trips() {
    let mut headers = HeaderMap::new();
    headers.append("set-cookie", "a=1".parse().unwrap());
    headers.append("set-cookie", "b=2".parse().unwrap());
    headers.append("x-name", "Zoë".as_bytes().try_into().unwrap());
    let body: Vec<u8> = (0..=255).collect();
    let frame = Frame::with_body(
        Message::HttpResponse {
            id: 7,
            status: 201,
            headers,
        },
        body,
    );
    let decoded = decode_all(&encode_to_vec(&frame).unwrap());
    assert_eq!(decoded, vec![Ok(frame)]);
}

#[test]
fn a_large_body_costs_little_more_than_itself() {
    let body = Bytes::from(vec![0xAB; 1024 * 1024]);
    let frame = Frame::with_body(
        Message::HttpRequest {
            id: 1,
            method: "POST".into(),
            path: "/echo".into(),
            headers: HeaderMap::new(),
        },
        body.clone(),
    );
    let wire = encode_to_vec(&frame).unwrap();
    assert!(
        wire.len() < body.len() + 200,
        "{} bytes on the wire",
        wire.len()
    );
}

#[test]
fn several_frames_in_one_read_are_all_delivered_separately() {
    let mut wire = Vec::new();
    for id in 1..=5 {
        wire.extend(encode_to_vec(&Frame::new(Message::Ping { id })).unwrap());
    }
    let ids: Vec<_> = decode_all(&wire)
        .into_iter()
        .map(|f| f.unwrap().message.id())
        .collect();
    assert_eq!(ids, (1..=5).map(Some).collect::<Vec<_>>());
}

#[test]
fn frames_arriving_a_byte_at_a_time_are_reassembled() {
    let frame = Frame::with_body(
        Message::KvSet {
            id: 3,
            key: "k".into(),
        },
        &b"value"[..],
    );
    let wire = encode_to_vec(&frame).unwrap();
    let mut codec = FrameCodec::new();
    let mut src = BytesMut::new();
    let mut got = None;
    for byte in wire {
        src.put_u8(byte);
        if let Some(item) = codec.decode(&mut src).unwrap() {
            assert!(got.is_none());
            got = Some(item);
        }
    }
    assert_eq!(got, Some(Ok(frame)));
}

#[test]
fn a_4_gib_length_prefix_is_refused_without_allocating() {
    let mut codec = FrameCodec::new();
    let mut src = BytesMut::from(&[0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0][..]);
    let err = codec.decode(&mut src).unwrap_err();
    // The error says what came, for logs and the checker's report.
    assert_eq!(
        err.to_string(),
        "a frame length of 4294967295 bytes, over the limit of 16777216"
    );
    assert!(
        src.capacity() < 1024 * 1024,
        "capacity grew to {}",
        src.capacity()
    );
}

#[test]
fn sixteen_mib_is_the_limit() {
    let mut src = BytesMut::new();
    src.put_u32(MAX_FRAME_LEN as u32 + 1);
    assert!(FrameCodec::new().decode(&mut src).is_err());

    let body = Bytes::from(vec![0; MAX_FRAME_LEN]);
    let err = EncodedFrame::from_parts(
        &Message::KvSet {
            id: 1,
            key: "k".into(),
        },
        body,
    );
    assert!(matches!(err, Err(PluginError::TooLarge { .. })));
}

#[test]
fn a_truncated_frame_waits_then_fails_at_end_of_stream() {
    let wire = encode_to_vec(&Frame::new(Message::Ping { id: 1 })).unwrap();
    let mut codec = FrameCodec::new();
    let mut src = BytesMut::from(&wire[..wire.len() - 3]);
    assert!(codec.decode(&mut src).unwrap().is_none());
    assert!(codec.decode_eof(&mut src).is_err());
}

#[test]
fn bad_headers_are_reported_with_their_id_and_the_stream_goes_on() {
    let mut wire = raw_frame(br#"{"type":"kv_get","id":9,"key":42}"#, b"");
    wire.extend(raw_frame(br#"{"type":"teleport","id":10}"#, b""));
    wire.extend(raw_frame(b"not json", b""));
    wire.extend(raw_frame(&[], b""));
    wire.extend(encode_to_vec(&Frame::new(Message::Ping { id: 11 })).unwrap());
    let items = decode_all(&wire);
    assert_eq!(items.len(), 5);
    let bad: Vec<_> = items[..4].iter().map(|i| i.clone().unwrap_err()).collect();
    assert_eq!((bad[0].id, bad[0].code), (Some(9), ErrorCode::BadMessage));
    assert_eq!((bad[1].id, bad[1].code), (Some(10), ErrorCode::UnknownType));
    assert_eq!((bad[2].id, bad[2].code), (None, ErrorCode::BadMessage));
    assert_eq!((bad[3].id, bad[3].code), (None, ErrorCode::BadMessage));
    assert_eq!(items[4].clone().unwrap().message, Message::Ping { id: 11 });
}

#[test]
fn salvage_survives_a_mistyped_id_and_flags_broken_answers() {
    let items = decode_all(&raw_frame(br#"{"type":"warp","id":"seven"}"#, b""));
    let bad = items[0].clone().unwrap_err();
    assert_eq!(
        (bad.id, bad.code, bad.answer),
        (None, ErrorCode::UnknownType, false)
    );

    let header = br#"{"type":"http_response","id":3,"status":200,"headers":[["bad name","x"]]}"#;
    let bad = decode_all(&raw_frame(header, b"")).remove(0).unwrap_err();
    assert_eq!(
        (bad.id, bad.code, bad.answer),
        (Some(3), ErrorCode::BadMessage, true)
    );

    let bad = decode_all(&raw_frame(br#"{"type":"kv_get","id":3}"#, b""))
        .remove(0)
        .unwrap_err();
    assert!(!bad.answer, "a request is not an answer");
}

#[test]
fn header_length_beyond_the_frame_is_a_bad_frame() {
    let mut wire = Vec::new();
    wire.put_u32(8);
    wire.put_u32(1000);
    wire.put_u32(0);
    let items = decode_all(&wire);
    assert_eq!(items[0].clone().unwrap_err().code, ErrorCode::BadMessage);

    let short = [0, 0, 0, 2, 0, 0];
    assert!(decode_all(&short)[0].is_err());
}

#[test]
fn a_protocol_1_frame_is_named_as_such() {
    let mut wire = Vec::new();
    let json = br#"{"type":"http","payload":{}}"#;
    wire.put_u32(json.len() as u32);
    wire.put_slice(json);
    let bad = decode_all(&wire).remove(0).unwrap_err();
    assert!(bad.reason.contains("protocol 1"), "{}", bad.reason);
}

#[test]
fn unknown_fields_are_ignored_and_unknown_error_codes_read_as_unknown() {
    let items = decode_all(&raw_frame(
        br#"{"type":"error","id":4,"code":"quota_exceeded","message":"m","extra":[1,2]}"#,
        b"",
    ));
    assert_eq!(
        items[0].clone().unwrap().message,
        Message::error(Some(4), ErrorCode::Unknown, "m")
    );
}

#[test]
fn invalid_header_names_are_refused() {
    let header =
        br#"{"type":"http_request","id":1,"method":"GET","path":"/","headers":[["bad name","x"]]}"#;
    let bad = decode_all(&raw_frame(header, b"")).remove(0).unwrap_err();
    assert_eq!((bad.id, bad.code), (Some(1), ErrorCode::BadMessage));
}

#[test]
fn message_shapes_match_the_protocol_document() {
    let cases: Vec<(Message, &str)> = vec![
        (
            Message::Init {
                id: 1,
                protocol: 2,
                instance_id: "550e8400-e29b-41d4-a716-446655440000".into(),
                plugin_id: "hello".into(),
                config: serde_json::Map::new(),
                limits: Limits::default(),
                license: None,
            },
            r#"{"type":"init","id":1,"protocol":2,"instance_id":"550e8400-e29b-41d4-a716-446655440000","plugin_id":"hello","config":{},"limits":{"max_frame_len":16777216,"max_key_len":1024,"max_value_len":1048576,"max_list_keys":1000}}"#,
        ),
        (
            Message::Init {
                id: 1,
                protocol: 2,
                instance_id: "550e8400-e29b-41d4-a716-446655440000".into(),
                plugin_id: "reports".into(),
                config: serde_json::Map::new(),
                limits: Limits::default(),
                license: Some("toru-license-v1.e30.AA".into()),
            },
            r#"{"type":"init","id":1,"protocol":2,"instance_id":"550e8400-e29b-41d4-a716-446655440000","plugin_id":"reports","config":{},"limits":{"max_frame_len":16777216,"max_key_len":1024,"max_value_len":1048576,"max_list_keys":1000},"license":"toru-license-v1.e30.AA"}"#,
        ),
        (
            Message::InitOk { id: 1, protocol: 2 },
            r#"{"type":"init_ok","id":1,"protocol":2}"#,
        ),
        (
            Message::HttpRequest {
                id: 2,
                method: "GET".into(),
                path: "/slow?ms=5".into(),
                headers: [(http::header::ACCEPT, "*/*".parse().unwrap())]
                    .into_iter()
                    .collect(),
            },
            r#"{"type":"http_request","id":2,"method":"GET","path":"/slow?ms=5","headers":[["accept","*/*"]]}"#,
        ),
        (Message::Cancel { id: 2 }, r#"{"type":"cancel","id":2}"#),
        (Message::Pong { id: 5 }, r#"{"type":"pong","id":5}"#),
        (
            Message::Shutdown { deadline_ms: 5000 },
            r#"{"type":"shutdown","deadline_ms":5000}"#,
        ),
        (
            Message::KvValue {
                id: 1,
                found: false,
            },
            r#"{"type":"kv_value","id":1,"found":false}"#,
        ),
        (
            Message::KvList {
                id: 3,
                prefix: "user/".into(),
                after: None,
                limit: Some(100),
            },
            r#"{"type":"kv_list","id":3,"prefix":"user/","after":null,"limit":100}"#,
        ),
        (
            Message::KvKeys {
                id: 3,
                keys: vec!["user/a".into()],
                next: Some("user/a".into()),
            },
            r#"{"type":"kv_keys","id":3,"keys":["user/a"],"next":"user/a"}"#,
        ),
        (
            Message::KvDeleted {
                id: 4,
                existed: true,
            },
            r#"{"type":"kv_deleted","id":4,"existed":true}"#,
        ),
        (
            Message::error(Some(6), ErrorCode::InvalidKey, "key is empty"),
            r#"{"type":"error","id":6,"code":"invalid_key","message":"key is empty"}"#,
        ),
    ];
    for (message, json) in cases {
        assert_eq!(serde_json::to_string(&message).unwrap(), json);
        assert_eq!(serde_json::from_str::<Message>(json).unwrap(), message);
        assert!(json.contains(&format!("\"{}\"", message.kind())));
    }
}

#[test]
fn every_type_name_is_listed() {
    for kind in Message::ANSWER_TYPES {
        assert!(Message::TYPES.contains(kind));
    }
    for kind in Message::TYPES {
        let json = format!(r#"{{"type":"{kind}"}}"#);
        let err = serde_json::from_str::<Message>(&json)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("unknown variant"), "{kind}: {err}");
    }
}

fn arb_headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec(("[a-z][a-z0-9-]{0,12}", "\\PC{0,16}"), 0..6).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            map.append(
                name,
                http::HeaderValue::from_bytes(value.as_bytes()).unwrap(),
            );
        }
        map
    })
}

fn arb_message() -> impl Strategy<Value = Message> {
    let id = any::<u64>();
    let text = "\\PC{0,24}";
    prop_oneof![
        (id, any::<u32>(), text, text).prop_map(|(id, protocol, instance_id, plugin_id)| {
            Message::Init {
                id,
                protocol,
                instance_id,
                plugin_id,
                config: serde_json::Map::new(),
                limits: Limits::default(),
                license: None,
            }
        }),
        (id, "[A-Z]{1,7}", text, arb_headers()).prop_map(|(id, method, path, headers)| {
            Message::HttpRequest {
                id,
                method,
                path,
                headers,
            }
        }),
        (id, 100u16..1000, arb_headers()).prop_map(|(id, status, headers)| {
            Message::HttpResponse {
                id,
                status,
                headers,
            }
        }),
        id.prop_map(|id| Message::Ping { id }),
        id.prop_map(|id| Message::Cancel { id }),
        any::<u64>().prop_map(|deadline_ms| Message::Shutdown { deadline_ms }),
        (id, text).prop_map(|(id, key)| Message::KvSet { id, key }),
        (id, any::<bool>()).prop_map(|(id, found)| Message::KvValue { id, found }),
        (
            id,
            text,
            prop::option::of(text),
            prop::option::of(any::<u32>())
        )
            .prop_map(|(id, prefix, after, limit)| Message::KvList {
                id,
                prefix,
                after,
                limit,
            }),
        (
            id,
            prop::collection::vec(text, 0..5),
            prop::option::of(text)
        )
            .prop_map(|(id, keys, next)| Message::KvKeys { id, keys, next }),
        (prop::option::of(id), text).prop_map(|(id, message)| Message::Error {
            id,
            code: ErrorCode::Storage,
            message,
        }),
    ]
}

proptest! {
    #[test]
    fn any_frame_round_trips(message in arb_message(), body in prop::collection::vec(any::<u8>(), 0..512)) {
        let frame = Frame::with_body(message, body);
        let decoded = decode_all(&encode_to_vec(&frame).unwrap());
        prop_assert_eq!(decoded, vec![Ok(frame)]);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut codec = FrameCodec::new();
        let mut src = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = codec.decode(&mut src) {}
        let _ = codec.decode_eof(&mut src);
    }

    #[test]
    fn arbitrary_headers_never_panic_the_parser(header in prop::collection::vec(any::<u8>(), 0..256), body in prop::collection::vec(any::<u8>(), 0..16)) {
        let items = decode_all(&raw_frame(&header, &body));
        prop_assert_eq!(items.len(), 1);
    }
}

/// A header of one of the frequent kinds, with each field present, missing, mistyped
/// or out of place at random: the quick reading of `Message::from_header` must take
/// exactly what the derived `Deserialize` takes.
fn arb_header_object() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{Value, json};
    let kind = prop::sample::select(vec![
        "http_request",
        "http_response",
        "kv_get",
        "kv_set",
        "kv_delete",
        "kv_value",
        "kv_ok",
        "kv_deleted",
        "ping",
        "pong",
        "cancel",
        "error",
        "init",
        "h\\u0074tp_request",
        "nonsense",
    ]);
    let field = |values: Vec<Value>| prop::option::of(prop::sample::select(values));
    (
        kind,
        field(vec![
            json!(7),
            json!(-1),
            json!("7"),
            Value::Null,
            json!(1.5),
        ]),
        field(vec![json!("GET"), json!(1)]),
        field(vec![json!("/a?b"), json!("/caf\u{e9}"), Value::Null]),
        field(vec![json!(200), json!(99), json!(70_000), json!("200")]),
        field(vec![
            json!([["x-a", "1"], ["x-a", "2"]]),
            json!([]),
            json!([["bad name", "1"]]),
            json!([["x-a"]]),
            json!({"x-a": "1"}),
            json!([["x-a", "tab\u{0001}"]]),
        ]),
        field(vec![json!("k"), json!(""), json!(3)]),
        field(vec![json!(true), json!("true")]),
        field(vec![json!(false), Value::Null]),
        field(vec![json!({"nested": [1, 2]}), json!("extra")]),
    )
        .prop_map(
            |(kind, id, method, path, status, headers, key, found, existed, extra)| {
                let mut object = serde_json::Map::new();
                object.insert("type".into(), Value::String(kind.replace("\\u0074", "t")));
                for (name, value) in [
                    ("id", id),
                    ("method", method),
                    ("path", path),
                    ("status", status),
                    ("headers", headers),
                    ("key", key),
                    ("found", found),
                    ("existed", existed),
                    ("extra", extra),
                ] {
                    if let Some(value) = value {
                        object.insert(name.into(), value);
                    }
                }
                Value::Object(object)
            },
        )
}

proptest! {
    #[test]
    fn the_quick_header_reading_takes_exactly_what_serde_takes(object in arb_header_object()) {
        let header = serde_json::to_vec(&object).unwrap();
        let quick = Message::from_header(&header).map_err(|e| e.to_string());
        let derived = serde_json::from_slice::<Message>(&header).map_err(|e| e.to_string());
        prop_assert_eq!(quick, derived);
    }
}

#[test]
fn headers_the_quick_reading_leaves_to_serde_read_the_same() {
    for header in [
        // An array: a derived struct would take it by position; the enum does not.
        &br#"["ping", 1]"#[..],
        br#" {"type":"ping","id":1}"#,
        br#"{"type":"p\u0069ng","id":1}"#,
        br#"{"type":"ping","id":1,"id":2}"#,
        br#"{"id":3,"type":"pong"}"#,
        br#"{"type":"http_response","id":1,"status":200,"headers":[["x-a","caf\u00e9 \"q\""]]}"#,
        br#"{"type":"kv_get","id":1}"#,
        br#"{"type":"shutdown","deadline_ms":5}"#,
        // Not UTF-8: in a string, in a key, and where no string is.
        b"{\"type\":\"http_request\",\"id\":1,\"method\":\"GET\",\"path\":\"/\xff\",\"headers\":[]}",
        b"{\"type\":\"ping\",\"id\":1,\"\xc3\":1}",
        b"{\"type\":\"ping\",\"id\":1}\xe2\x82",
        // Multi-byte UTF-8 as it is, not escaped.
        "{\"type\":\"http_response\",\"id\":1,\"status\":200,\"headers\":[[\"x-a\",\"café ☕\"]]}".as_bytes(),
    ] {
        let quick = Message::from_header(header).map_err(|e| e.to_string());
        let derived = serde_json::from_slice::<Message>(header).map_err(|e| e.to_string());
        assert_eq!(quick, derived, "{}", String::from_utf8_lossy(header));
    }
}
