//go:build tools

// Package promtail pins Promtail (Apache-2.0, in the Loki module; v3.6 is
// the last release that has clients/cmd/promtail) that make bench-peers
// measures logferry's sidecar against. It is not part of logferry and
// nothing here is imported by it.
package promtail

import _ "github.com/grafana/loki/v3/clients/cmd/promtail"
