package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/logferry/logferry/shared/metadata"
)

// DaemonName is what dockerd puts in every logging driver's
// logger.Info.DaemonName; the sidecar fills metadata.Container.DaemonName
// with it so that {{.DaemonName}} renders as it does in the plugin.
const DaemonName = "docker"

// Container is what the sidecar knows about one container from inspect:
// the metadata both capture styles label with, and what the sidecar needs
// to choose how to read the logs.
type Container struct {
	metadata.Container

	// LogDriver is HostConfig.LogConfig.Type, e.g. "json-file" or "local".
	LogDriver string
	// LogOpts is HostConfig.LogConfig.Config, the container's log-opts.
	LogOpts map[string]string
	// LogPath is the json-file driver's file; the daemon reports "" for
	// other drivers.
	LogPath string
	// NetworkMode is HostConfig.NetworkMode ("none", "host", "bridge",
	// "container:<id>", a network's name), for container selection.
	NetworkMode string
	// TTY is Config.Tty: the logs stream is then raw, not multiplexed,
	// and has only stdout.
	TTY bool
	// Running is State.Running, also true while paused or restarting.
	Running bool
	// StartedAt and FinishedAt are the last start and exit; zero when the
	// container never started, and FinishedAt zero while the first run
	// goes on.
	StartedAt  time.Time
	FinishedAt time.Time
}

// listInspects bounds the inspects List runs at once.
const listInspects = 8

// List returns the running containers (as docker ps shows them, paused and
// restarting ones included), each inspected, in the daemon's order. A
// container removed between the list and its inspect is left out. The
// inspects run listInspects at once: one after another they kept a sidecar
// starting beside 60 containers on a busy daemon from shipping for 4 s
// (the soak of 2026-12-07), and a container removed meanwhile lost what
// it had left to read.
func (c *Client) List(ctx context.Context) ([]Container, error) {
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{})
	if err != nil {
		return nil, fmt.Errorf("engine: list containers: %w", err)
	}
	cts := make([]Container, len(res.Items))
	errs := make([]error, len(res.Items))
	sem := make(chan struct{}, listInspects)
	var wg sync.WaitGroup
	for i, s := range res.Items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			cts[i], errs[i] = c.Inspect(ctx, s.ID)
		}()
	}
	wg.Wait()
	out := make([]Container, 0, len(res.Items))
	for i, ct := range cts {
		if errors.Is(errs[i], metadata.ErrNotFound) {
			continue
		}
		if errs[i] != nil {
			return nil, errs[i]
		}
		out = append(out, ct)
	}
	return out, nil
}

// Existing returns the ids of every container the daemon has, running or
// not.
func (c *Client) Existing(ctx context.Context) (map[string]bool, error) {
	res, err := c.api.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("engine: list all containers: %w", err)
	}
	ids := make(map[string]bool, len(res.Items))
	for _, s := range res.Items {
		ids[s.ID] = true
	}
	return ids, nil
}

// Inspect returns the container with the id (or name). The error wraps
// metadata.ErrNotFound when the daemon has no such container.
func (c *Client) Inspect(ctx context.Context, id string) (Container, error) {
	res, err := c.api.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		if cerrdefs.IsNotFound(err) {
			return Container{}, fmt.Errorf("engine: inspect %s: %w: %w", id, metadata.ErrNotFound, err)
		}
		return Container{}, fmt.Errorf("engine: inspect %s: %w", id, err)
	}
	ct, err := fromInspect(res.Container)
	if err != nil {
		return Container{}, fmt.Errorf("engine: inspect %s: %w", id, err)
	}
	return ct, nil
}

// fromInspect fills a Container the way the daemon fills logger.Info for a
// logging driver (Config.Image, the image id, Config.Labels, Config.Env),
// so both capture styles label a container alike.
func fromInspect(r container.InspectResponse) (Container, error) {
	if r.ID == "" {
		return Container{}, errors.New("the daemon's answer has no container id")
	}
	ct := Container{
		Container: metadata.Container{
			ID:         r.ID,
			Name:       strings.TrimPrefix(r.Name, "/"),
			ImageID:    r.Image,
			DaemonName: DaemonName,
		},
		LogPath: r.LogPath,
	}
	var err error
	if ct.Created, err = parseTime("Created", r.Created); err != nil {
		return Container{}, err
	}
	if cfg := r.Config; cfg != nil {
		ct.ImageName = cfg.Image
		ct.Labels = cfg.Labels
		ct.Env = cfg.Env
		ct.TTY = cfg.Tty
	}
	if hc := r.HostConfig; hc != nil {
		ct.LogDriver = hc.LogConfig.Type
		ct.LogOpts = hc.LogConfig.Config
		ct.NetworkMode = string(hc.NetworkMode)
	}
	if st := r.State; st != nil {
		ct.Running = st.Running
		if ct.StartedAt, err = parseTime("State.StartedAt", st.StartedAt); err != nil {
			return Container{}, err
		}
		if ct.FinishedAt, err = parseTime("State.FinishedAt", st.FinishedAt); err != nil {
			return Container{}, err
		}
	}
	return ct, nil
}

// parseTime parses an inspect time. The daemon writes Go's zero time
// ("0001-01-01T00:00:00Z") for "never", which parses to the zero Time.
func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s: %w", field, err)
	}
	return t, nil
}
