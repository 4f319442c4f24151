package testtraces

import (
	"context"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// FakeClock is a fake clock in a context, for a component's Start: its clock loop then
// ticks only when the test advances the clock.
func FakeClock() (*clockwork.FakeClock, context.Context) {
	c := clockwork.NewFakeClock()
	return c, clockwork.AddToContext(context.Background(), c)
}

// Advance moves a component's fake clock on by d, every at a time (its tick interval), as
// real time would pass, and returns once its clock loop has handled each tick that fired
// and waits for the next: traces due are judged, their signals handed to delivery. The
// loop must be the clock's only waiter.
func Advance(t testing.TB, c *clockwork.FakeClock, d, every time.Duration) {
	t.Helper()
	for step := time.Duration(0); step < d; step += every {
		c.Advance(min(every, d-step))
		WaitForTheLoop(t, c)
	}
}

// WaitForTheLoop returns once a component's clock loop waits for its next tick.
func WaitForTheLoop(t testing.TB, c *clockwork.FakeClock) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal("the clock loop is not waiting for a tick")
	}
}
