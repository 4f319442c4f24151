//! The words of a span that rules name (`kind == server`, `status == error`), shared by
//! the checker ([`crate::lang::check`]), which refuses a word that is none of them, and by
//! traces ([`crate::trace`]), which hold them: shared words sit at the bottom.

/// The OTLP span kind, named as in TraceQL's `span:kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    /// `unspecified` (OTLP 0).
    Unspecified,
    /// `internal` (OTLP 1).
    #[default]
    Internal,
    /// `server` (OTLP 2).
    Server,
    /// `client` (OTLP 3).
    Client,
    /// `producer` (OTLP 4).
    Producer,
    /// `consumer` (OTLP 5).
    Consumer,
}

impl SpanKind {
    /// Every kind's word, as `span:kind` compares it.
    pub const WORDS: [&'static str; 6] = [
        "unspecified",
        "internal",
        "server",
        "client",
        "producer",
        "consumer",
    ];

    /// The word for this kind.
    pub fn as_str(self) -> &'static str {
        Self::WORDS[self as usize]
    }

    /// The kind for a word, if it names one.
    pub fn from_word(word: &str) -> Option<SpanKind> {
        Some(match word {
            "unspecified" => SpanKind::Unspecified,
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => return None,
        })
    }

    /// The kind for an OTLP enum number (unknown numbers read as unspecified).
    pub fn from_otlp(n: i32) -> SpanKind {
        match n {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// The OTLP status code, named as in TraceQL's `span:status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum StatusCode {
    /// `unset` (OTLP 0).
    #[default]
    Unset,
    /// `ok` (OTLP 1).
    Ok,
    /// `error` (OTLP 2).
    Error,
}

impl StatusCode {
    /// Every status word, as `span:status` compares it.
    pub const WORDS: [&'static str; 3] = ["unset", "ok", "error"];

    /// The word for this status.
    pub fn as_str(self) -> &'static str {
        Self::WORDS[self as usize]
    }

    /// The status for a word, if it names one.
    pub fn from_word(word: &str) -> Option<StatusCode> {
        Some(match word {
            "unset" => StatusCode::Unset,
            "ok" => StatusCode::Ok,
            "error" => StatusCode::Error,
            _ => return None,
        })
    }

    /// The status for an OTLP enum number (unknown numbers read as unset).
    pub fn from_otlp(n: i32) -> StatusCode {
        match n {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
}
