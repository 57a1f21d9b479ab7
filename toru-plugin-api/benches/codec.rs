//! The cost of one protocol-2 frame header: encoding and decoding the
//! `http_request` and `http_response` messages that every forwarded request
//! makes, with the headers a browser or `wrk` sends and a plugin answers.
//!
//! What is measured: [`FrameCodec`] decoding a whole frame (length prefixes,
//! JSON header, 100-byte body) from a buffer, and [`EncodedFrame::from_parts`]
//! encoding one; and the JSON header alone, read by the derived `Deserialize`
//! against `Message::from_header`. One frame per iteration; criterion's `time` line is the cost of
//! one frame on one core.
//!
//! ```text
//! cargo bench -p toru-plugin-api --bench codec
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::{Bytes, BytesMut};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use tokio_util::codec::{Decoder, Encoder};
use toru_plugin_api::codec::{EncodedFrame, FrameCodec};
use toru_plugin_api::protocol::v2::Message;

fn request() -> Message {
    let mut headers = HeaderMap::new();
    headers.insert(
        "user-agent",
        HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64)"),
    );
    headers.insert(
        "accept",
        HeaderValue::from_static("text/html,application/xhtml+xml"),
    );
    headers.insert(
        "accept-encoding",
        HeaderValue::from_static("gzip, deflate, br"),
    );
    headers.insert(
        "accept-language",
        HeaderValue::from_static("en-GB,en;q=0.9"),
    );
    headers.insert("x-forwarded-for", HeaderValue::from_static("192.0.2.7"));
    Message::HttpRequest {
        id: 123_456,
        method: "GET".into(),
        path: "/hello?name=world".into(),
        headers,
    }
}

fn response() -> Message {
    let mut headers = HeaderMap::new();
    headers.insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    headers.append("set-cookie", HeaderValue::from_static("a=1"));
    headers.append("set-cookie", HeaderValue::from_static("b=2"));
    Message::HttpResponse {
        id: 123_456,
        status: 200,
        headers,
    }
}

fn wire(message: &Message) -> BytesMut {
    let frame = EncodedFrame::from_parts(message, Bytes::from(vec![b'x'; 100])).unwrap();
    let mut out = BytesMut::new();
    FrameCodec::new().encode(frame, &mut out).unwrap();
    out
}

fn bench(c: &mut Criterion) {
    for (name, message) in [("http_request", request()), ("http_response", response())] {
        let bytes = wire(&message);
        c.bench_function(&format!("decode/{name}"), |b| {
            let mut codec = FrameCodec::new();
            b.iter(|| {
                let mut src = bytes.clone();
                codec.decode(&mut src).unwrap().unwrap().unwrap()
            });
        });
        // The header alone, read by the derived `Deserialize` (what the codec did
        // before its one-pass reading of the frequent messages) and by the codec's.
        let header = serde_json::to_vec(&message).unwrap();
        c.bench_function(&format!("header/derived/{name}"), |b| {
            b.iter(|| serde_json::from_slice::<Message>(&header).unwrap());
        });
        c.bench_function(&format!("header/one_pass/{name}"), |b| {
            b.iter(|| Message::from_header(&header).unwrap());
        });
        let body = Bytes::from(vec![b'x'; 100]);
        c.bench_function(&format!("encode/{name}"), |b| {
            b.iter(|| EncodedFrame::from_parts(&message, body.clone()).unwrap());
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
