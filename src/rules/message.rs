//! A rule's message template (`"charge for {order.id} without reservation"`): the keys it
//! reads, and the message rendered from a trigger span's attributes.

/// The keys a message template reads (`{key}`), in order.
pub fn placeholders(template: &str) -> Vec<String> {
    let keys = std::cell::RefCell::new(Vec::new());
    render_message(template, |k| {
        keys.borrow_mut().push(k.to_string());
        None
    });
    keys.into_inner()
}

/// Replaces `{key}` with the attribute's value; a missing attribute renders as empty.
pub fn render_message(template: &str, get: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        match rest[open + 1..].find(['}', '{']) {
            Some(close) if rest.as_bytes()[open + 1 + close] == b'}' => {
                let key = rest[open + 1..open + 1 + close].trim();
                out.push_str(&get(key).unwrap_or_default());
                rest = &rest[open + 2 + close..];
            }
            _ => {
                out.push('{');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}
