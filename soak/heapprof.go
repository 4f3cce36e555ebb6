package soak

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// heapProfiles saves the plugin's and the sidecar's heap profiles and
// their goroutines (counted by stack, as text) at the end of the warm-up,
// every HeapProfileEvery after it and a minute before the end
// (cfg.HeapProfiles), until ctx ends. Compare two heap profiles with
// go tool pprof -diff_base FIRST SECOND, two goroutine lists with diff. A
// profile that cannot be taken (the process is restarting) is logged and
// skipped.
func (e *env) heapProfiles(ctx context.Context) {
	cfg := e.cfg
	var at []time.Duration
	for d := cfg.Warmup; d < cfg.Duration-time.Minute; d += cfg.HeapProfileEvery {
		at = append(at, d)
	}
	at = append(at, cfg.Duration-time.Minute)
	for _, d := range at {
		if !sleepCtx(ctx, time.Until(e.start.Add(d))) {
			return
		}
		for proc, addr := range map[string]string{procPlugin: e.pluginMetrics, procSidecar: e.sc.metrics} {
			name := filepath.Join(cfg.OutDir, fmt.Sprintf("heap-%s-%02dm.pb.gz", proc, int(d.Minutes())))
			// Not ?gc=1: a forced GC lets the runtime return memory, and
			// RSS dropped 10-14 MiB at each profile of run e, in the
			// series the leak fits read. The profile's in-use figures
			// are as of the last GC, seconds old at these rates.
			if err := saveProfile(ctx, addr, "heap", name); err != nil {
				e.logf("heap profile of the %s: %v", proc, err)
			}
			name = filepath.Join(cfg.OutDir, fmt.Sprintf("goroutines-%s-%02dm.txt", proc, int(d.Minutes())))
			if err := saveProfile(ctx, addr, "goroutine?debug=1", name); err != nil {
				e.logf("goroutines of the %s: %v", proc, err)
			}
		}
	}
}

// saveProfile writes addr's /debug/pprof/<profile> (with its query) to
// name.
func saveProfile(ctx context.Context, addr, profile, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/"+profile, nil)
	if err != nil {
		return err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", req.URL, resp.Status)
	}
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
