package engine

import (
	"strings"
	"testing"
	"time"
)

func TestConfigRefusesWhatWouldSilentlyMisbehave(t *testing.T) {
	ok := DefaultConfig()
	ok.RulesInline = "rules: []"
	if err := ok.Validate(); err != nil {
		t.Fatalf("the defaults with rules are valid: %v", err)
	}
	cases := map[string]func(c *Config){
		"both `rules` and `rules_inline`":                     func(c *Config) { c.Rules = []string{"rules.yaml"} },
		"max_trace_age (1s) is below trace_idle_timeout (5s)": func(c *Config) { c.MaxTraceAge = time.Second },
		"no rules": func(c *Config) { c.RulesInline = " " },
		"memory_limit_mib must be a positive number of MiB": func(c *Config) { c.MemoryLimitMiB = 0 },
		"memory_limit_mib must be a positive number of MiB (the bytes of held traces the engine may hold, outside the Go heap; default 512), got -1": func(c *Config) {
			c.MemoryLimitMiB = -1
		},
	}
	for want, change := range cases {
		c := ok
		change(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("want %q, got %v", want, err)
		}
	}
}
