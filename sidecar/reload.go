package sidecar

import (
	"errors"
	"fmt"
	"strings"
)

// liveKeys are the settings a reload applies: which containers are
// shipped, what a container's labels may override, and every log option.
// Any other setting needs a restart.
var liveKeys = map[string]bool{
	"include-labels": true, "exclude-labels": true, "include-names": true, "exclude-names": true,
	"include-images": true, "exclude-images": true, "selection-relabel-config": true,
	"label-overrides": true, "label-override-tenants": true,
}

// ErrNeedsRestart is wrapped by Reload for a change only a restart applies.
var ErrNeedsRestart = errors.New("needs a restart")

// Reload applies cfg, loaded anew (SIGHUP, or a change of the --config
// file): containers started from now on are selected and shipped by it,
// and a running container whose endpoint or tenant it changes hands its
// next lines to the new one; lines handed before go on to the old one,
// and its position moves past a line only once every line before it, at
// either endpoint, was accepted. Pipelines, labels and other log options
// apply to containers started afterwards. An error (a setting only a
// restart applies, options that do not parse) changes nothing.
func (r *Router) Reload(cfg Config) (changed []string, err error) {
	before := map[string]string{}
	r.mu.Lock()
	for _, s := range r.live.Effective { // r.cfg's until the first reload
		before[s.Key] = s.Value
	}
	r.mu.Unlock()
	var restart []string
	seen := map[string]bool{}
	for _, s := range cfg.Effective {
		seen[s.Key] = true
		if before[s.Key] == s.Value {
			continue
		}
		if _, own := ownKeys[s.Key]; own && !liveKeys[s.Key] {
			restart = append(restart, s.Key)
			continue
		}
		changed = append(changed, s.Key)
	}
	for k := range before {
		if _, own := ownKeys[k]; !own && !seen[k] {
			changed = append(changed, k) // a log option no longer given
		}
	}
	if len(restart) > 0 {
		return nil, fmt.Errorf("%s changed: %w (nothing was applied)", strings.Join(restart, ", "), ErrNeedsRestart)
	}
	if _, _, err := cfg.ContainerOptions(nil); err != nil {
		return nil, err
	}
	cfg.Guards = r.cfg.Guards
	r.mu.Lock()
	r.live = cfg
	running := make([]*shipper, 0, len(r.shippers))
	for _, s := range r.shippers {
		running = append(running, s)
	}
	r.mu.Unlock()
	for _, s := range running {
		opts, _, err := cfg.ContainerOptions(s.c.Labels)
		if err != nil {
			s.log.Warn("reload: keeping the container's endpoint", "err", err)
			continue
		}
		old := s.fan.Base()
		if old.Key() == opts.Loki.Key() {
			continue
		}
		if err := s.fan.SetBase(opts.Loki); err != nil {
			s.log.Warn("reload: keeping the container's endpoint", "err", err)
			continue
		}
		s.log.Info("reload: the container's next lines go to the new endpoint",
			"from", old.Endpoint(), "from_tenant", old.TenantID, "to", opts.Loki.Endpoint(), "to_tenant", opts.Loki.TenantID)
	}
	return changed, nil
}
