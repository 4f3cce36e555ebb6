//go:build tools

// Package lokibuild pins the Loki binary that logferry's tests run against.
package lokibuild

import _ "github.com/grafana/loki/v3/cmd/loki"
