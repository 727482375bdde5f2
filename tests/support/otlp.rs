//! In-test OTLP trace collectors, HTTP and gRPC: each decodes every `ExportTraceServiceRequest`
//! (gzip too) and keeps the spans, with their resource attributes copied on as `resource.KEY` and the scope
//! version as `scope.version`, so tests read everything with [`attr`].

use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Spans received by an in-test collector.
pub type Spans = Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>;

/// What an in-test collector received: the spans, and the content encoding of every export
/// request (`identity` when uncompressed).
#[derive(Clone, Default)]
pub struct Received {
    pub spans: Spans,
    pub encodings: Arc<Mutex<Vec<String>>>,
}

/// A minimal OTLP/HTTP receiver: decodes every `ExportTraceServiceRequest` POSTed to
/// `/v1/traces` (other paths get 404, as from a real collector); the port and the spans
/// received so far.
pub fn collector() -> (u16, Spans) {
    let (port, received) = http_collector();
    (port, received.spans)
}

/// [`collector`], also telling the encodings the exports came with (gzip bodies decoded).
pub fn http_collector() -> (u16, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Received::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(mut stream) = stream else { continue };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut len = 0usize;
                    let mut encoding = "identity".to_string();
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let traces = line.split_whitespace().nth(1) == Some("/v1/traces");
                    loop {
                        line.clear();
                        reader.read_line(&mut line).unwrap();
                        let l = line.trim_end();
                        if l.is_empty() {
                            break;
                        }
                        if let Some((k, v)) = l.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                len = v.trim().parse().unwrap();
                            } else if k.eq_ignore_ascii_case("content-encoding") {
                                encoding = v.trim().to_string();
                            }
                        }
                    }
                    let mut body = vec![0; len];
                    reader.read_exact(&mut body).unwrap();
                    if !traces {
                        let _ = stream
                            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
                        continue;
                    }
                    if encoding == "gzip" {
                        body = gunzip(&body);
                    }
                    sink.encodings.lock().unwrap().push(encoding);
                    record(&sink.spans, &body);
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, received)
}

/// The gRPC method every OTLP/gRPC trace export calls.
const EXPORT_METHOD: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// A minimal OTLP/gRPC receiver written on `h2` (not on the tonic the gateway uses, so the
/// wire format itself is checked): h2c, unary `TraceService/Export`, gzip messages decoded;
/// any other method answers `grpc-status: 12` (unimplemented).
pub fn grpc_collector() -> (u16, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let received = Received::default();
    let sink = received.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            for _ in 0..1000 {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let sink = sink.clone();
                tokio::spawn(async move {
                    let Ok(mut conn) = h2::server::handshake(socket).await else {
                        return;
                    };
                    while let Some(Ok((req, respond))) = conn.accept().await {
                        tokio::spawn(grpc_export(req, respond, sink.clone()));
                    }
                });
            }
        });
    });
    (port, received)
}

async fn grpc_export(
    req: http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<bytes::Bytes>,
    sink: Received,
) {
    let path_ok = req.uri().path() == EXPORT_METHOD;
    let grpc = req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let encoding = req
        .headers()
        .get("grpc-encoding")
        .map_or("identity".to_string(), |v| v.to_str().unwrap().to_string());
    let mut body = req.into_body();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.unwrap();
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let status = if !(path_ok && grpc) {
        "12"
    } else {
        // One length-prefixed message: a compressed flag, a 4-byte big-endian length.
        assert!(data.len() >= 5, "a gRPC message frame");
        let len = u32::from_be_bytes(data[1..5].try_into().unwrap()) as usize;
        let message = &data[5..5 + len];
        let message = if data[0] == 1 {
            assert_eq!(encoding, "gzip", "a compressed message names its encoding");
            gunzip(message)
        } else {
            message.to_vec()
        };
        sink.encodings.lock().unwrap().push(if data[0] == 1 {
            encoding
        } else {
            "identity".into()
        });
        record(&sink.spans, &message);
        "0"
    };
    let response = http::Response::builder()
        .status(200)
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let Ok(mut stream) = respond.send_response(response, false) else {
        return;
    };
    if status == "0" {
        // An empty ExportTraceServiceResponse: flag 0, length 0.
        let _ = stream.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), false);
    }
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(status));
    let _ = stream.send_trailers(trailers);
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// Decodes one `ExportTraceServiceRequest` into `sink`. Resource and scope attributes are
/// copied onto each span as `resource.KEY` and `scope.version`, so tests read them with `attr`.
fn record(sink: &Spans, body: &[u8]) {
    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
    let req =
        opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(body)
            .unwrap();
    for rs in req.resource_spans {
        let resource: Vec<KeyValue> = rs
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default()
            .into_iter()
            .map(|mut kv| {
                kv.key = format!("resource.{}", kv.key);
                kv
            })
            .collect();
        for ss in rs.scope_spans {
            let version = ss.scope.map(|s| s.version).unwrap_or_default();
            for mut span in ss.spans {
                span.attributes.extend(resource.iter().cloned());
                span.attributes.push(KeyValue {
                    key: "scope.version".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue(version.clone())),
                    }),
                    ..Default::default()
                });
                sink.lock().unwrap().push(span);
            }
        }
    }
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn attr(span: &opentelemetry_proto::tonic::trace::v1::Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    span.attributes.iter().find(|a| a.key == key).and_then(|a| {
        match a.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::IntValue(i) => Some(i.to_string()),
            other => Some(format!("{other:?}")),
        }
    })
}
