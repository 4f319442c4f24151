package betraceconnector

import (
	"github.com/betracehq/betrace/go-shim/internal/engine"
)

// Config of the betrace connector: the shared engine settings (go-shim/README.md).
type Config struct {
	engine.Config `mapstructure:",squash"`
}

// Validate checks the configuration; rule files are read and compiled at Start.
func (c *Config) Validate() error { return c.Config.Validate() }
