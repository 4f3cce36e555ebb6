//go:build tools

// Package driver pins Grafana's Loki Docker driver (Apache-2.0, in the Loki
// module) that make bench-peers measures logferry's plugin against. It is
// not part of logferry and nothing here is imported by it.
package driver

import _ "github.com/grafana/loki/v3/clients/cmd/docker-driver"
