//! `Accept` header negotiation among the JSON variants a response can take (aggregated discovery,
//! Tables): which one the client prefers over plain JSON.

/// The variant the `Accept` header prefers, if it prefers one over plain JSON. Media ranges count
/// by descending `q`, then in the order given (a stable sort); ranges the server cannot produce
/// (protobuf, or a variant `pick` does not know) are skipped.
///
/// `pick` sees a JSON range's `g`, `v` and `as` parameters and answers `None` to skip the range,
/// `Some(None)` for plain JSON and `Some(Some(variant))` for a variant.
pub(crate) fn preferred_variant<T: Copy>(
    accept: &str,
    pick: impl Fn(Option<&str>, Option<&str>, Option<&str>) -> Option<Option<T>>,
) -> Option<T> {
    let mut ranges: Vec<(f32, Option<T>)> = Vec::new();
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(media.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let (mut q, mut g, mut v, mut as_) = (1.0f32, None, None, None);
        for p in parts {
            match p.split_once('=') {
                Some(("q", x)) => q = x.parse().unwrap_or(0.0),
                Some(("g", x)) => g = Some(x),
                Some(("v", x)) => v = Some(x),
                Some(("as", x)) => as_ = Some(x),
                _ => {}
            }
        }
        let Some(wanted) = pick(g, v, as_) else {
            continue;
        };
        if q > 0.0 {
            ranges.push((q, wanted));
        }
    }
    ranges.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranges.first().and_then(|(_, wanted)| *wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pick_x(g: Option<&str>, v: Option<&str>, as_: Option<&str>) -> Option<Option<&'static str>> {
        match (g, v, as_) {
            (None, None, None) => Some(None),
            (Some("x.io"), Some("v1"), Some("X")) => Some(Some("x")),
            _ => None,
        }
    }

    #[test]
    fn the_highest_q_wins_and_ties_keep_the_clients_order() {
        assert_eq!(
            preferred_variant(
                "application/json;q=0.5, application/json;g=x.io;v=v1;as=X",
                pick_x
            ),
            Some("x")
        );
        assert_eq!(
            preferred_variant(
                "application/json, application/json;g=x.io;v=v1;as=X",
                pick_x
            ),
            None
        );
        assert_eq!(
            preferred_variant(
                "application/json;g=x.io;v=v1;as=X, application/json",
                pick_x
            ),
            Some("x")
        );
    }

    #[test]
    fn unknown_variants_protobuf_and_q0_are_skipped() {
        let accept = "application/vnd.kubernetes.protobuf;g=x.io;v=v1;as=X, \
                      application/json;g=x.io;v=v2;as=X, application/json;g=x.io;v=v1;as=X;q=0";
        assert_eq!(preferred_variant(accept, pick_x), None);
        assert_eq!(preferred_variant("", pick_x), None);
    }
}
