// Package testtraces builds the small traces the components' tests feed in.
package testtraces

import (
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Rules is a one-rule file: a payment.charge needs an inventory.reserve in its trace.
const Rules = `rules:
  - id: payment-requires-inventory
    name: Payment requires an inventory reservation
    severity: critical
    condition: when { payment.charge } always { inventory.reserve }
    signal:
      message: "charge for {order_id} without reservation"
      context: [order_id]
`

// TraceID is the id of trace n.
func TraceID(n byte) pcommon.TraceID {
	return pcommon.TraceID{n, 0xbe, 0x7a, 0xce, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}
}

// SpanID is the id of span n.
func SpanID(n byte) pcommon.SpanID { return pcommon.SpanID{0, 0, 0, 0, 0, 0, 1, n} }

// Span returns a batch with one span of trace `trace`, of service `service`.
func Span(trace, span, parent byte, service, name string) ptrace.Traces {
	td := ptrace.NewTraces()
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	sp := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	sp.SetTraceID(TraceID(trace))
	sp.SetSpanID(SpanID(span))
	if parent != 0 {
		sp.SetParentSpanID(SpanID(parent))
	}
	sp.SetName(name)
	start := time.Now()
	sp.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	sp.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(time.Millisecond)))
	sp.Attributes().PutStr("order_id", "ord_9")
	return td
}
