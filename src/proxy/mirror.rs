//! The hooks' side of request mirroring ([`crate::mirror`]): the copy is decided and its head
//! taken at the first attempt's `upstream_request_filter` (the head as the upstream gets it),
//! fed the body as `request_body_filter` sees it, sent when the body is complete; when the
//! route compares, the response body is hashed on its way to the client and the answer handed
//! over at `logging`.

use super::RequestCtx;
use crate::http_call::Caller;
use crate::mirror::{Comparison, Copy};
use pingora::http::RequestHeader;
use pingora::proxy::Session;
use std::sync::Arc;

/// Where a request's copy stands.
#[derive(Default)]
pub(super) enum MirrorState {
    /// No attempt has gone out yet.
    #[default]
    Undecided,
    /// Sampled; the body is being copied.
    Copying(Copy),
    /// Sent; with the comparison when the route compares.
    Sent {
        comparison: Option<Comparison>,
        /// The whole response body went through the comparison's hash.
        body_complete: bool,
    },
    /// Not mirrored.
    Off,
}

/// An attempt's upstream head is ready: the first decides whether the request is copied; a
/// retry restarts a copy still collecting its body (Pingora sends the body again).
pub(super) fn head(ctx: &mut RequestCtx, head: &RequestHeader) {
    match &mut ctx.mirror {
        MirrorState::Undecided => {
            let copy = ctx
                .route()
                .and_then(|r| r.mirror())
                .and_then(|m| m.sample(head));
            ctx.mirror = copy.map_or(MirrorState::Off, MirrorState::Copying);
        }
        MirrorState::Copying(copy) => copy.restart(head),
        MirrorState::Sent { .. } | MirrorState::Off => {}
    }
}

/// A chunk of the request body (or its end) on its way upstream.
pub(super) fn body(ctx: &mut RequestCtx, chunk: Option<&[u8]>, end: bool, caller: &Arc<Caller>) {
    let MirrorState::Copying(copy) = &mut ctx.mirror else {
        return;
    };
    if !chunk.is_none_or(|c| copy.push(c)) {
        ctx.mirror = MirrorState::Off;
        return;
    }
    if end {
        let MirrorState::Copying(copy) = std::mem::take(&mut ctx.mirror) else {
            return;
        };
        ctx.mirror = MirrorState::Sent {
            comparison: copy.send(caller),
            body_complete: false,
        };
    }
}

/// A chunk of the response body (before Portico compresses it).
pub(super) fn response_body(ctx: &mut RequestCtx, chunk: Option<&[u8]>, end: bool) {
    let MirrorState::Sent {
        comparison: Some(comparison),
        body_complete,
    } = &mut ctx.mirror
    else {
        return;
    };
    if !comparison.wants_body() {
        return;
    }
    if let Some(chunk) = chunk {
        comparison.body_chunk(chunk);
    }
    *body_complete |= end;
}

/// The request is over: its answer goes to the comparison (none when Portico made it).
pub(super) fn finish(session: &Session, ctx: &mut RequestCtx) {
    let MirrorState::Sent {
        comparison: Some(comparison),
        body_complete,
    } = std::mem::take(&mut ctx.mirror)
    else {
        return;
    };
    let status = session
        .response_written()
        .filter(|_| !ctx.reply.gateway_made)
        .map(|r| r.status.as_u16());
    comparison.finish(status, body_complete);
}
