// Package metadata holds the components' type and stability levels (see each
// component's metadata.yaml).
package metadata

import "go.opentelemetry.io/collector/component"

// Type is the name both components are configured by.
var Type = component.MustNewType("betrace")

// Stability levels.
const (
	TracesToLogsStability = component.StabilityLevelAlpha
	TracesStability       = component.StabilityLevelAlpha
)

// ScopeName names the components' own telemetry.
const ScopeName = "github.com/betracehq/betrace/go-shim"
