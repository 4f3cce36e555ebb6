// Package metadata owns what logferry knows about a container (Container),
// so that the plugin and the sidecar label a container from the same facts.
//
// There is no cache: the plugin is handed a container's metadata in
// StartLogging, and the sidecar inspects a container once per start
// because it needs that moment's runtime state (running, log driver, log
// path, start time) along with the metadata, which no cache could serve.
package metadata

import (
	"errors"
	"strings"
	"time"
)

// ErrNotFound is wrapped by the sidecar's Engine client when no container
// has the id; test for it with errors.Is.
var ErrNotFound = errors.New("metadata: container not found")

// Docker labels that compose and swarm put on the containers they create.
const (
	LabelComposeProject = "com.docker.compose.project"
	LabelComposeService = "com.docker.compose.service"
	LabelSwarmStack     = "com.docker.stack.namespace"
	LabelSwarmService   = "com.docker.swarm.service.name"
)

// Container is the metadata of one container, as the plugin learns it from
// StartLogging's Info and the sidecar from the Engine API's inspect. Both
// must fill it the same way: the label builder sees nothing else.
type Container struct {
	// ID is the full 64-character container id.
	ID string
	// Name is the container name without Docker's leading '/'.
	Name string
	// ImageName is the image as the container was created from it
	// (Docker's Config.Image, e.g. "nginx:1.27" or a digest).
	ImageName string
	// ImageID is the full image id as Docker reports it ("sha256:...").
	ImageID string
	// Labels are the container's labels.
	Labels map[string]string
	// Env holds the container's environment, "K=V" per entry.
	Env []string
	// Created is when the container was created.
	Created time.Time
	// DaemonName is Docker's logger.Info.DaemonName ("docker").
	DaemonName string
}

// ComposeProject is the compose project the container belongs to, or "".
func (c Container) ComposeProject() string { return c.Labels[LabelComposeProject] }

// ComposeService is the compose service the container runs, or "".
func (c Container) ComposeService() string { return c.Labels[LabelComposeService] }

// SwarmStack is the swarm stack the container belongs to, or "".
func (c Container) SwarmStack() string { return c.Labels[LabelSwarmStack] }

// SwarmService is the swarm service the container runs, or "".
func (c Container) SwarmService() string { return c.Labels[LabelSwarmService] }

// LookupEnv returns the value of the environment variable key and whether it
// is set. When Env holds key more than once the last entry wins, as in
// Docker. Entries without '=' are ignored.
func (c Container) LookupEnv(key string) (string, bool) {
	for i := len(c.Env) - 1; i >= 0; i-- {
		k, v, ok := strings.Cut(c.Env[i], "=")
		if ok && k == key {
			return v, true
		}
	}
	return "", false
}

// normalized returns c with the name in the form Container documents, so a
// name taken verbatim from Docker ("/web") and one already trimmed ("web")
// end up equal whichever style captured the container.
func (c Container) normalized() Container {
	c.Name = strings.TrimPrefix(c.Name, "/")
	return c
}
