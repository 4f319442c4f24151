package engine

import (
	"errors"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/collector/component/componentstatus"
	"go.uber.org/zap"
)

// ErrDataRefused is what a component returns for a batch it refuses while it pushes back:
// a plain error, not a permanent one (consumererror.IsPermanent is false), as the
// collector's memory_limiter returns when it refuses, so that receivers answer "retry
// later" (the OTLP receiver: gRPC UNAVAILABLE, HTTP 503) and senders keep the batch and
// retry with backoff.
var ErrDataRefused = errors.New("betrace: data refused: the violations already judged are waiting for delivery beyond their bound (the next consumer is not taking them); retry later")

// pushback is whether the component refuses data now, and how much it refused.
//
// It refuses while the outbox holds refuseAt batches of signals: the next consumer is not
// taking them (a logs backend down behind an exporter that blocks), so every trace judged
// now only adds signals that would be dropped. Refusing makes the senders hold the spans
// until there is room again, and leaves the outbox's last quarter to the traces already
// held. The bytes the engine holds are not a reason to refuse: memory_limit_mib bounds
// them by judging the oldest traces early, and a refused batch would only come back later,
// its spans then late for the traces they belong to.
type pushback struct {
	refused atomic.Uint64 // spans refused

	mu sync.Mutex
	on bool // refusing, as last logged and reported
}

// refuseAt is how many batches waiting in an outbox of the given capacity make the
// component refuse data: three quarters of it.
func refuseAt(capacity int) int { return max(capacity*3/4, 1) }

// admit returns nil when a batch of spans may be ingested, ErrDataRefused (counted) when
// the component pushes back. The start and end of refusing are logged and reported once
// each (a recoverable error, then OK), as memory_limiter reports them.
func (r *Runner) admit(spans int) error {
	waiting := len(r.out)
	refuse := waiting >= refuseAt(cap(r.out))
	r.pressure.mu.Lock()
	changed := refuse != r.pressure.on
	r.pressure.on = refuse
	r.pressure.mu.Unlock()
	if changed && refuse {
		r.logger.Warn("betrace: refusing data: violations wait for delivery and the outbox is three quarters full; receivers answer 'retry later' until the next consumer takes them",
			zap.Int("outbox_batches", waiting), zap.Int("outbox_capacity", cap(r.out)))
		r.report(componentstatus.NewRecoverableErrorEvent(ErrDataRefused))
	} else if changed {
		r.logger.Info("betrace: accepting data again: the outbox has room",
			zap.Uint64("spans_refused_in_all", r.pressure.refused.Load()))
		r.report(componentstatus.NewEvent(componentstatus.StatusOK))
	}
	if !refuse {
		return nil
	}
	r.pressure.refused.Add(uint64(spans))
	return ErrDataRefused
}
