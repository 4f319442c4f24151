package betraceprocessor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/component/componentstatus"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/betracehq/betrace/go-shim/internal/betrace"
	"github.com/betracehq/betrace/go-shim/internal/engine"
)

// sharedEngine is one engine for every processor instance of one configuration. The
// collector creates an instance for each pipeline that lists `betrace`; they share the
// engine, as memorylimiter shares its limiter, so that a trace whose spans come in through
// several pipelines is held and judged once, whole, in one memory budget.
//
// Each instance is a feed of the engine: a trace's violation span goes down every
// pipeline that carried part of the trace, so it follows the trace to its exporters (two
// pipelines fed by one receiver each send it on; two pipelines that split a trace and
// export to one backend send it twice, with the same span id). At most engine.MaxFeeds
// instances share one engine; more get another.
//
// The engine starts with the first instance to start and stops with the first to shut
// down: the collector stops a pipeline's processors before its exporters, so at the first
// shutdown every instance's next consumer still runs and takes its last violation spans.
// Spans that reach an instance after that pass on unjudged (logged).
type sharedEngine struct {
	cfg *Config

	mu        sync.Mutex
	instances []*betraceProcessor // by feed
	hosts     []component.Host    // the started instances', each told the engine's status
	stopped   bool
	runner    atomic.Pointer[engine.Runner] // set once the engine started
}

// sharedEngines holds the engines not yet started or still running, by configuration.
var sharedEngines = struct {
	sync.Mutex
	byConfig map[*Config]*sharedEngine
}{byConfig: map[*Config]*sharedEngine{}}

// join makes p a feed of its configuration's engine. An instance created after that
// engine started (which a collector never does: it creates every pipeline before
// starting any), or past engine.MaxFeeds, gets an engine of its own.
func join(cfg *Config, p *betraceProcessor) *sharedEngine {
	sharedEngines.Lock()
	defer sharedEngines.Unlock()
	s := sharedEngines.byConfig[cfg]
	if s != nil {
		s.mu.Lock()
		late := s.runner.Load() != nil || s.stopped || len(s.instances) == engine.MaxFeeds
		s.mu.Unlock()
		if late {
			s = nil
		}
	}
	if s == nil {
		s = &sharedEngine{cfg: cfg}
		sharedEngines.byConfig[cfg] = s
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p.feed = len(s.instances)
	s.instances = append(s.instances, p)
	return s
}

// start starts the engine with the first instance (its logger and telemetry serve the
// engine); later instances only ask for its status.
func (s *sharedEngine) start(ctx context.Context, p *betraceProcessor, host component.Host) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts = append(s.hosts, host)
	if s.runner.Load() != nil {
		return nil
	}
	tel, err := telemetry(p.set.TelemetrySettings)
	if err != nil {
		return err
	}
	r, err := engine.Start(ctx, s.cfg.Config, engine.Settings{
		ID:          p.set.ID,
		Telemetry:   p.set.TelemetrySettings,
		Instruments: tel,
		Report:      s.report,
		// Violation spans are built only when they are sent on; signals are counted either way.
		Outputs: betrace.Options{Spans: s.cfg.EmitViolationSpans},
		Feeds:   len(s.instances),
		Deliver: s.deliver,
		Host:    host,
		Kind:    component.KindProcessor,
	})
	if err != nil {
		return err
	}
	s.runner.Store(r)
	return nil
}

// report tells every started instance the engine's status.
func (s *sharedEngine) report(ev *componentstatus.Event) {
	s.mu.Lock()
	hosts := append([]component.Host(nil), s.hosts...)
	s.mu.Unlock()
	for _, h := range hosts {
		componentstatus.ReportStatus(h, ev)
	}
}

// deliver sends violation spans down the pipeline of the feed whose traces they are.
func (s *sharedEngine) deliver(ctx context.Context, o engine.Outgoing) error {
	s.mu.Lock()
	if o.Feed < 0 || o.Feed >= len(s.instances) {
		s.mu.Unlock()
		// Restored from storage written by a collector with more pipelines than this one.
		return fmt.Errorf("betrace: violation spans of feed %d, but %d pipelines feed the processor now", o.Feed, len(s.instances))
	}
	p := s.instances[o.Feed]
	s.mu.Unlock()
	td, err := (&ptrace.ProtoUnmarshaler{}).UnmarshalTraces(o.Spans)
	if err != nil {
		return err
	}
	return p.next.ConsumeTraces(ctx, td)
}

// shutdown stops the engine at the first instance's shutdown: every held trace is judged
// and its violation spans delivered to its feed before this returns.
func (s *sharedEngine) shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	sharedEngines.Lock()
	if sharedEngines.byConfig[s.cfg] == s {
		delete(sharedEngines.byConfig, s.cfg)
	}
	sharedEngines.Unlock()
	if r := s.runner.Load(); r != nil {
		return r.Shutdown(ctx)
	}
	return nil
}
