package betraceprocessor

import (
	"github.com/betracehq/betrace/go-shim/internal/engine"
)

// Config of the betrace processor: the shared engine settings, plus whether violations
// are sent down the traces pipeline as spans.
type Config struct {
	engine.Config `mapstructure:",squash"`
	// EmitViolationSpans sends a `betrace.violation` span into each violating trace.
	EmitViolationSpans bool `mapstructure:"emit_violation_spans"`
}

// Validate checks the configuration; rule files are read and compiled at Start.
func (c *Config) Validate() error { return c.Config.Validate() }
