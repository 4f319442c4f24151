//! Fuzzes what a replay through an index trusts. The first byte picks:
//!
//! * an index file's bytes (`replay::index::from_bytes`): refused or read, never a panic;
//! * a record's body, protobuf or JSON: where its spans lie (`otlp::layout`), and when the
//!   layout is sure, the property a replay through an index rests on — cutting out the
//!   spans of some traces and decoding the cut gives exactly those traces' fragments of
//!   the whole record, span for span, names, attributes and resources included.
#![no_main]

use std::sync::Arc;

use betrace::otlp::layout::{extract_json, extract_protobuf, Layout};
use betrace::otlp::{decode_json, decode_protobuf, json, protobuf, Batch};
use betrace::trace::projected::Projection;
use libfuzzer_sys::fuzz_target;

fn projection() -> Arc<Projection> {
    Arc::new(Projection::new(
        ["amount", "user.id", "n"].map(String::from),
        true,
    ))
}

/// Every fragment as text: trace, spans, names, attributes, resources.
fn view(batch: &Batch, keep: &dyn Fn(&[u8; 16]) -> bool) -> Vec<String> {
    batch
        .fragments
        .iter()
        .filter(|f| keep(&f.trace_id.0))
        .map(|f| {
            let spans: Vec<String> = f
                .spans
                .iter()
                .map(|s| {
                    let attrs: Vec<_> = f.attrs(s).collect();
                    format!("{s:?} {} {attrs:?} {:?}", f.name(s), f.resource_of(s))
                })
                .collect();
            format!("{:?}: {spans:?}", f.trace_id)
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, body)) = data.split_first() else {
        return;
    };
    if mode % 3 == 0 {
        let _ = betrace::replay::index::from_bytes(body);
        return;
    }
    let is_json = mode % 3 == 1;
    let layout: Option<Layout> = if is_json {
        json::layout(body).ok()
    } else {
        protobuf::layout(body).ok()
    };
    let Some(layout) = layout.filter(|l| l.sure) else {
        return;
    };
    let p = projection();
    let decode = |b: &[u8]| {
        if is_json {
            decode_json(b, &p).ok()
        } else {
            decode_protobuf(b, &p).ok()
        }
    };
    let whole = decode(body).expect("a record whose layout is sure decodes");
    // Keep the traces whose id's first byte has the bit `mode` picks.
    let bit = 1u8 << (mode >> 2 & 7);
    let kept = |id: &[u8; 16]| id[0] & bit != 0;
    let keep: Vec<bool> = layout.spans.iter().map(|(t, _)| kept(&t.0)).collect();
    let cut = if is_json {
        let mut piece = |r: (u32, u32), out: &mut Vec<u8>| {
            out.extend_from_slice(&body[r.0 as usize..r.1 as usize]);
            Ok::<(), ()>(())
        };
        extract_json(&layout.shape, &keep, &mut piece).unwrap()
    } else {
        extract_protobuf(body, &layout.shape, &keep)
    };
    let want = view(&whole, &kept);
    match cut {
        None => assert!(want.is_empty(), "nothing cut, but {want:?}"),
        Some(cut) => {
            let got = decode(&cut).expect("a cut record decodes");
            assert_eq!(view(&got, &|_| true), want);
            assert!(got.invalid_spans <= whole.invalid_spans);
        }
    }
});
