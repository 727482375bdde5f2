//! An in-test OTLP/HTTP trace collector: decodes every POSTed `ExportTraceServiceRequest` and
//! keeps the spans, with their resource attributes copied on as `resource.KEY` and the scope
//! version as `scope.version`, so tests read everything with [`attr`].

use prost::Message;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// Spans received by the in-test OTLP/HTTP collector.
pub type Spans = Arc<Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>;

/// A minimal OTLP/HTTP receiver: decodes every `ExportTraceServiceRequest` POSTed to
/// `/v1/traces` (other paths get 404, as from a real collector); the port and the spans
/// received so far.
pub fn collector() -> (u16, Spans) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let spans: Spans = Arc::default();
    let sink = spans.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(1000) {
            let Ok(mut stream) = stream else { continue };
            let sink = sink.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                loop {
                    let mut len = 0usize;
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
                    let req = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest::decode(&body[..]).unwrap();
                    // Resource and scope attributes are copied onto each span as
                    // `resource.KEY` and `scope.version`, so tests read them with `attr`.
                    use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
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
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n");
                }
            });
        }
    });
    (port, spans)
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
