//go:build tools

// Package logferry pins dependencies that the packages of later issues use,
// so that go mod tidy keeps them in go.mod while those packages are written.
package logferry

import (
	_ "github.com/docker/go-plugins-helpers/sdk"
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/gogo/protobuf/proto"
	_ "github.com/golang/snappy"
	_ "github.com/moby/moby/api/types/container"
	_ "github.com/moby/moby/client"
	_ "github.com/prometheus/client_golang/prometheus"
	_ "go.uber.org/goleak"
)
