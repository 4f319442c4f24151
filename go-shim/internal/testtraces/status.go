package testtraces

import (
	"sync"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/component/componenttest"
)

// StatusHost is a host that records the status events a component reports, as a
// collector's status aggregator receives them.
type StatusHost struct {
	component.Host
	mu       sync.Mutex
	statuses []componentstatus.Status
}

// NewStatusHost is a StatusHost with no extensions.
func NewStatusHost() *StatusHost { return &StatusHost{Host: componenttest.NewNopHost()} }

// Report records ev (componentstatus.Reporter).
func (h *StatusHost) Report(ev *componentstatus.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.statuses = append(h.statuses, ev.Status())
}

// Seen is every status reported so far, in order.
func (h *StatusHost) Seen() []componentstatus.Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]componentstatus.Status(nil), h.statuses...)
}
