// Package plugin is logferry's Docker logging driver: the LogDriver HTTP
// endpoints, one registry of streams (one per container FIFO), the local copy
// that serves `docker logs`, and the on-disk record of open streams that lets
// a restarted plugin re-attach to FIFOs the daemon will not hand it again.
package plugin

import (
	"strings"
	"time"

	"github.com/logferry/logferry/shared/metadata"
)

// Info is the container description the daemon sends with StartLogging and
// ReadLogs (moby's logger.Info, as JSON).
type Info struct {
	Config              map[string]string `json:"Config"`
	ContainerID         string            `json:"ContainerID"`
	ContainerName       string            `json:"ContainerName"`
	ContainerEntrypoint string            `json:"ContainerEntrypoint"`
	ContainerArgs       []string          `json:"ContainerArgs"`
	ContainerImageID    string            `json:"ContainerImageID"`
	ContainerImageName  string            `json:"ContainerImageName"`
	ContainerCreated    time.Time         `json:"ContainerCreated"`
	ContainerEnv        []string          `json:"ContainerEnv"`
	ContainerLabels     map[string]string `json:"ContainerLabels"`
	LogPath             string            `json:"LogPath"`
	DaemonName          string            `json:"DaemonName"`
}

// Container is the metadata the label builder needs, taken from Info: the
// plugin never asks the Engine API, the daemon told it everything.
func (i Info) Container() metadata.Container {
	return metadata.Container{
		ID:         i.ContainerID,
		Name:       strings.TrimPrefix(i.ContainerName, "/"),
		ImageName:  i.ContainerImageName,
		ImageID:    i.ContainerImageID,
		Labels:     i.ContainerLabels,
		Env:        i.ContainerEnv,
		Created:    i.ContainerCreated,
		DaemonName: i.DaemonName,
	}
}

// StartLoggingRequest is the body of /LogDriver.StartLogging.
type StartLoggingRequest struct {
	File string `json:"File"`
	Info Info   `json:"Info"`
}

// StopLoggingRequest is the body of /LogDriver.StopLogging.
type StopLoggingRequest struct {
	File string `json:"File"`
}

// ReadConfig is the Config of /LogDriver.ReadLogs.
type ReadConfig struct {
	Since  time.Time `json:"Since"`
	Until  time.Time `json:"Until"`
	Tail   int       `json:"Tail"`
	Follow bool      `json:"Follow"`
}

// ReadLogsRequest is the body of /LogDriver.ReadLogs.
type ReadLogsRequest struct {
	Info   Info       `json:"Info"`
	Config ReadConfig `json:"Config"`
}

// errResponse is every endpoint's answer: Err empty on success.
type errResponse struct {
	Err string `json:"Err"`
}

// capabilitiesResponse wraps the capability in "Cap": that is what the
// daemon decodes (the published docs show it unwrapped, wrongly).
type capabilitiesResponse struct {
	Cap struct {
		ReadLogs bool `json:"ReadLogs"`
	} `json:"Cap"`
}
