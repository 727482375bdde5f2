//! Compressing a route's responses: the algorithm is negotiated from the request in
//! admission, the decision and header rewrite happen in `response_filter`, the body streams
//! through the encoder chunk by chunk in `response_body_filter` (nothing is buffered whole),
//! and the sizes are counted when the request is logged. A route without `compress` costs one
//! `Option` check per hook.

use super::{Proxy, RequestCtx};
use crate::telemetry::policy::count_compressed;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

impl Proxy {
    /// Decides whether this response is compressed and rewrites its headers if so.
    pub(super) fn start_compression(
        &self,
        session: &Session,
        resp: &mut ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let Some(compress) = ctx.route().and_then(|r| r.policies().compression()) else {
            return Ok(());
        };
        let req = session.req_header();
        // An HTTP/1.0 client can take neither chunked framing nor a length we do not know.
        let h1 = !session.is_http2();
        let chosen = ctx
            .reply
            .encoding
            .filter(|_| !h1 || req.version == http::Version::HTTP_11);
        let encoder = compress.start(chosen, &req.method, resp, h1)?;
        ctx.reply.encoder = encoder;
        Ok(())
    }

    /// Sends a body chunk through the encoder, if the response is compressed.
    pub(super) fn compress_chunk(
        &self,
        body: &mut Option<Bytes>,
        end: bool,
        ctx: &mut RequestCtx,
    ) -> pingora::Result<()> {
        let Some(encoder) = ctx.reply.encoder.as_mut() else {
            return Ok(());
        };
        let out = encoder.encode(body.as_deref().unwrap_or(&[]), end)?;
        *body = Some(out);
        Ok(())
    }
}

/// Counts a compressed response (at logging).
pub(super) fn record(ctx: &RequestCtx) {
    let (Some(encoder), Some(algorithm), Some(route)) =
        (&ctx.reply.encoder, ctx.reply.encoding, ctx.route())
    else {
        return;
    };
    // Pingora's stat names brotli "brotli"; the label uses the `Content-Encoding` token.
    let (_, bytes_in, bytes_out, _) = encoder.stat();
    count_compressed(route.name(), algorithm.as_str(), bytes_in, bytes_out);
}
