//! The host side of protocol 2 against plugins that misbehave, played by a
//! raw peer on a real Unix socket.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use support::*;
use tokio::net::UnixListener;
use tokio_util::codec::Framed;
use toru_plugin_api::PluginError;
use toru_plugin_api::codec::{EncodedFrame, FrameCodec};
use toru_plugin_api::host::HostConnection;
use toru_plugin_api::protocol::v2::{ErrorCode, Message};

/// A fake plugin: answers `init`, then runs `script` on the connection.
async fn fake_plugin<F, Fut>(script: F) -> (tempfile::TempDir, std::path::PathBuf)
where
    F: FnOnce(Framed<tokio::net::UnixStream, FrameCodec>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::new());
        let init = framed.next().await.unwrap().unwrap().unwrap();
        let Message::Init { id, .. } = init.message else {
            panic!("not init")
        };
        send(&mut framed, Message::InitOk { id, protocol: 2 }).await;
        script(framed).await;
    });
    (dir, path)
}

async fn send(framed: &mut Framed<tokio::net::UnixStream, FrameCodec>, message: Message) {
    framed
        .send(EncodedFrame::from_parts(&message, Bytes::new()).unwrap())
        .await
        .unwrap();
}

async fn host_for(path: &std::path::Path) -> HostConnection {
    let stream = tokio::net::UnixStream::connect(path).await.unwrap();
    HostConnection::connect(stream, init_params(), Arc::new(MemKv::default()), LONG)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_plugin_dying_mid_request_fails_the_request_at_once() {
    let (_dir, path) = fake_plugin(|mut framed| async move {
        let _request = framed.next().await;
        drop(framed); // the plugin "dies" holding the request
    })
    .await;
    let host = host_for(&path).await;
    let started = Instant::now();
    let result = host.http(get("/"), Duration::from_secs(30)).await;
    assert!(
        matches!(result, Err(PluginError::NotConnected)),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?}",
        started.elapsed()
    );
    assert!(host.is_closed());
}

#[tokio::test]
async fn a_plugin_that_never_answers_times_out_and_gets_cancel() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (_dir, path) = fake_plugin(|mut framed| async move {
        let request = framed.next().await.unwrap().unwrap().unwrap();
        let cancel = framed.next().await.unwrap().unwrap().unwrap();
        let _ = tx.send((request.message.id(), cancel.message));
        let _ = framed.next().await;
    })
    .await;
    let host = host_for(&path).await;
    let result = host.http(get("/"), Duration::from_millis(100)).await;
    assert!(matches!(result, Err(PluginError::Timeout(_))), "{result:?}");
    let (id, cancel) = tokio::time::timeout(LONG, rx).await.unwrap().unwrap();
    assert_eq!(Message::Cancel { id: id.unwrap() }, cancel);
}

#[tokio::test]
async fn garbage_and_stray_answers_from_a_plugin_are_contained() {
    let (_dir, path) = fake_plugin(|mut framed| async move {
        // An answer to nothing, garbage, an unknown type: then behave.
        send(&mut framed, Message::Pong { id: 4242 }).await;
        framed.get_mut().try_write(&raw_frame(b"{oops")).unwrap();
        framed
            .get_mut()
            .try_write(&raw_frame(br#"{"type":"explode","id":77}"#))
            .unwrap();
        let mut replies = Vec::new();
        while let Some(Ok(Ok(frame))) = framed.next().await {
            match frame.message {
                Message::Error { id, code, .. } => replies.push((id, code)),
                Message::HttpRequest { id, .. } => {
                    assert_eq!(
                        replies,
                        [
                            (None, ErrorCode::BadMessage),
                            (Some(77), ErrorCode::UnknownType)
                        ]
                    );
                    let answer = Message::HttpResponse {
                        id,
                        status: 200,
                        headers: Default::default(),
                    };
                    framed
                        .send(EncodedFrame::from_parts(&answer, Bytes::from("fine")).unwrap())
                        .await
                        .unwrap();
                }
                _ => {}
            }
        }
    })
    .await;
    let host = host_for(&path).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = host.http(get("/"), LONG).await.unwrap();
    assert_eq!(response.body, "fine");
}

#[tokio::test]
async fn duplicate_kv_ids_from_a_plugin_are_refused() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (_dir, path) = fake_plugin(|mut framed| async move {
        // Two writes with one id, sent together: the second may arrive while
        // the first is in flight (refused) or after it (accepted). Either way
        // each gets exactly one answer.
        send(
            &mut framed,
            Message::KvGet {
                id: 3,
                key: "a".into(),
            },
        )
        .await;
        send(
            &mut framed,
            Message::KvGet {
                id: 3,
                key: "a".into(),
            },
        )
        .await;
        send(
            &mut framed,
            Message::KvGet {
                id: 4,
                key: "".into(),
            },
        )
        .await;
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(framed.next().await.unwrap().unwrap().unwrap().message);
        }
        let _ = tx.send(answers);
    })
    .await;
    let _host = host_for(&path).await;
    let answers = tokio::time::timeout(LONG, rx).await.unwrap().unwrap();
    let for_3 = answers.iter().filter(|m| m.id() == Some(3)).count();
    assert_eq!(for_3, 2);
    assert!(answers.iter().any(|m| matches!(
        m,
        Message::Error {
            id: Some(4),
            code: ErrorCode::InvalidKey,
            ..
        }
    )));
}

#[tokio::test]
async fn a_plugin_refusing_init_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::new());
        let _ = framed.next().await;
        send(&mut framed, Message::Pong { id: 1 }).await;
        let _ = framed.next().await;
    });
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let result =
        HostConnection::connect(stream, init_params(), Arc::new(MemKv::default()), LONG).await;
    assert!(
        matches!(result, Err(PluginError::Protocol(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_broken_answer_fails_its_request_at_once_without_a_reply() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (_dir, path) = fake_plugin(|mut framed| async move {
        let request = framed.next().await.unwrap().unwrap().unwrap();
        let id = request.message.id().unwrap();
        let broken = format!(
            r#"{{"type":"http_response","id":{id},"status":200,"headers":[["bad name","x"]]}}"#
        );
        framed
            .get_mut()
            .try_write(&raw_frame(broken.as_bytes()))
            .unwrap();
        // Whatever the host sends next (it should send nothing until the ping).
        send(&mut framed, Message::Ping { id: 1 }).await;
        let next = framed.next().await.unwrap().unwrap().unwrap();
        let _ = tx.send(next.message);
        let _ = framed.next().await;
    })
    .await;
    let host = host_for(&path).await;
    let started = Instant::now();
    let result = host.http(get("/"), Duration::from_secs(30)).await;
    assert!(
        matches!(
            result,
            Err(PluginError::Remote {
                code: ErrorCode::BadMessage,
                ..
            })
        ),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let next = tokio::time::timeout(LONG, rx).await.unwrap().unwrap();
    assert_eq!(
        next,
        Message::Pong { id: 1 },
        "the host replied to a broken answer"
    );
}

#[tokio::test]
async fn an_invalid_status_or_protocol_from_a_plugin_is_refused() {
    let (_dir, path) = fake_plugin(|mut framed| async move {
        while let Some(Ok(Ok(frame))) = framed.next().await {
            if let Message::HttpRequest { id, .. } = frame.message {
                let answer = Message::HttpResponse {
                    id,
                    status: 1000,
                    headers: Default::default(),
                };
                send(&mut framed, answer).await;
            }
        }
    })
    .await;
    let host = host_for(&path).await;
    let result = host.http(get("/"), LONG).await;
    assert!(
        matches!(result, Err(PluginError::Protocol(_))),
        "{result:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.sock");
    let listener = UnixListener::bind(&path).unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut framed = Framed::new(stream, FrameCodec::new());
        let init = framed.next().await.unwrap().unwrap().unwrap();
        send(
            &mut framed,
            Message::InitOk {
                id: init.message.id().unwrap(),
                protocol: 3,
            },
        )
        .await;
        let _ = framed.next().await;
    });
    let stream = tokio::net::UnixStream::connect(&path).await.unwrap();
    let result =
        HostConnection::connect(stream, init_params(), Arc::new(MemKv::default()), LONG).await;
    assert!(
        matches!(result, Err(PluginError::Protocol(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_cancel_from_a_plugin_gets_no_answer() {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (_dir, path) = fake_plugin(|mut framed| async move {
        send(&mut framed, Message::Cancel { id: 5 }).await;
        send(&mut framed, Message::Ping { id: 6 }).await;
        let next = framed.next().await.unwrap().unwrap().unwrap();
        let _ = tx.send(next.message);
        let _ = framed.next().await;
    })
    .await;
    let _host = host_for(&path).await;
    let next = tokio::time::timeout(LONG, rx).await.unwrap().unwrap();
    assert_eq!(next, Message::Pong { id: 6 });
}
