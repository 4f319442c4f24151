// Package engine runs a BeTrace engine inside a collector component: configuration and
// rule loading, the clock ticker, delivery of signals to the next consumer, the engine's
// counters as the component's telemetry, and its log events in the collector's log.
package engine

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.opentelemetry.io/collector/component"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
)

// Config is what both components share (the `betrace` keys of go-shim/README.md).
type Config struct {
	// Rules are rule files, directories (every *.yaml / *.yml in them) or globs; the
	// engine reads them (at start and at each reload).
	Rules []string `mapstructure:"rules"`
	// RulesInline is a rule file's text.
	RulesInline string `mapstructure:"rules_inline"`
	// TraceIdleTimeout judges a trace this long after its last span.
	TraceIdleTimeout time.Duration `mapstructure:"trace_idle_timeout"`
	// MaxTraceAge judges a trace at the latest this long after its first span.
	MaxTraceAge time.Duration `mapstructure:"max_trace_age"`
	// MaxTraces and MaxSpans bound memory: beyond them, the oldest traces are judged early.
	MaxTraces int `mapstructure:"max_traces"`
	MaxSpans  int `mapstructure:"max_spans"`
	// MemoryLimitMiB bounds the bytes the held traces take, in MiB (the engine's estimate
	// of its allocations, in the Rust heap the Go runtime does not see): beyond it, the
	// oldest traces are judged early, as beyond MaxTraces and MaxSpans.
	MemoryLimitMiB int `mapstructure:"memory_limit_mib"`
	// ReloadInterval, when positive, re-reads the rule files this often; a bad file keeps
	// the old rules.
	ReloadInterval time.Duration `mapstructure:"reload_interval"`
	// Storage names a storage extension (file_storage): held spans and undelivered signals
	// survive a crash or a restart (docs/deploy.md, "Nothing lost when a collector dies").
	Storage *component.ID `mapstructure:"storage"`
}

// storageLimit bounds the bytes of stored batches (compressed): past it batches are judged
// but not stored (counted, warned). Twice memory_limit_mib: a stored batch takes about a
// third of what its spans take held, and a batch stays while any of its traces waits.
func (c *Config) storageLimit() int64 {
	return int64(c.MemoryLimitMiB) << 21
}

// DefaultConfig has the defaults of docs/language.md, "When a trace is judged".
func DefaultConfig() Config {
	return Config{TraceIdleTimeout: 5 * time.Second, MaxTraceAge: 60 * time.Second, MaxTraces: 1_000_000, MaxSpans: 5_000_000, MemoryLimitMiB: 512}
}

// Validate checks what can be checked without reading files.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Rules) == 0 && strings.TrimSpace(c.RulesInline) == "" {
		errs = append(errs, errors.New("no rules: set `rules` (files, directories or globs) or `rules_inline`"))
	}
	if c.TraceIdleTimeout <= 0 {
		errs = append(errs, fmt.Errorf("trace_idle_timeout must be positive, got %v", c.TraceIdleTimeout))
	}
	if c.MaxTraceAge <= 0 {
		errs = append(errs, fmt.Errorf("max_trace_age must be positive, got %v", c.MaxTraceAge))
	}
	if c.MaxTraces <= 0 {
		errs = append(errs, fmt.Errorf("max_traces must be positive, got %d", c.MaxTraces))
	}
	if c.MaxSpans <= 0 {
		errs = append(errs, fmt.Errorf("max_spans must be positive, got %d", c.MaxSpans))
	}
	if c.MemoryLimitMiB <= 0 {
		errs = append(errs, fmt.Errorf("memory_limit_mib must be a positive number of MiB (the bytes of held traces the engine may hold, outside the Go heap; default 512), got %d", c.MemoryLimitMiB))
	}
	if len(c.Rules) > 0 && strings.TrimSpace(c.RulesInline) != "" {
		errs = append(errs, errors.New("both `rules` and `rules_inline` are set: set one of them (put inline rules in a file, or name every file in `rules`)"))
	}
	if c.TraceIdleTimeout > 0 && c.MaxTraceAge > 0 && c.MaxTraceAge < c.TraceIdleTimeout {
		errs = append(errs, fmt.Errorf("max_trace_age (%v) is below trace_idle_timeout (%v): every trace would be judged at max_trace_age and the idle timeout would never apply; raise max_trace_age or lower trace_idle_timeout", c.MaxTraceAge, c.TraceIdleTimeout))
	}
	if c.ReloadInterval < 0 {
		errs = append(errs, fmt.Errorf("reload_interval must not be negative, got %v", c.ReloadInterval))
	}
	return errors.Join(errs...)
}

// Sources names the rules for the engine: the paths of `rules`, which the engine expands
// and reads itself (files, directories, globs, as `betrace check` does — one owner for
// that, in Rust), or the text of `rules_inline`.
func (c *Config) Sources() []betrace.Source {
	if strings.TrimSpace(c.RulesInline) != "" {
		return []betrace.Source{{Name: "rules_inline", Text: c.RulesInline}}
	}
	out := make([]betrace.Source, 0, len(c.Rules))
	for _, spec := range c.Rules {
		out = append(out, betrace.Source{Name: spec, Path: true})
	}
	return out
}
