package soak

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profiles saves, at the end of the warm-up, every HeapProfileEvery after
// it and a minute before the end, until ctx ends: with cfg.HeapProfiles
// the plugin's and the sidecar's heap profiles and their goroutines
// (counted by stack, as text); with cfg.CPUProfiles a CPUProfileLength CPU
// profile of each, taken at once. Compare two heap profiles with
// go tool pprof -diff_base FIRST SECOND, two goroutine lists with diff. A
// profile that cannot be taken (the process is restarting) is logged and
// skipped.
func (e *env) profiles(ctx context.Context) {
	cfg := e.cfg
	var at []time.Duration
	for d := cfg.Warmup; d < cfg.Duration-time.Minute; d += cfg.HeapProfileEvery {
		at = append(at, d)
	}
	at = append(at, cfg.Duration-time.Minute)
	procs := map[string]string{procPlugin: e.pluginMetrics, procSidecar: e.sc.metrics}
	for _, d := range at {
		if !sleepCtx(ctx, time.Until(e.start.Add(d))) {
			return
		}
		name := func(kind, proc, ext string) string {
			return filepath.Join(cfg.OutDir, fmt.Sprintf("%s-%s-%02dm.%s", kind, proc, int(d.Minutes()), ext))
		}
		if cfg.HeapProfiles {
			for proc, addr := range procs {
				// Not ?gc=1: a forced GC lets the runtime return memory,
				// and RSS dropped 10-14 MiB at each profile of run e, in
				// the series the leak fits read. The profile's in-use
				// figures are as of the last GC, seconds old at these
				// rates.
				if err := saveProfile(ctx, addr, "heap", name("heap", proc, "pb.gz")); err != nil {
					e.logf("heap profile of the %s: %v", proc, err)
				}
				if err := saveProfile(ctx, addr, "goroutine?debug=1", name("goroutines", proc, "txt")); err != nil {
					e.logf("goroutines of the %s: %v", proc, err)
				}
			}
		}
		if cfg.CPUProfiles {
			q := fmt.Sprintf("profile?seconds=%d", int(cfg.CPUProfileLength.Seconds()))
			var wg sync.WaitGroup
			for proc, addr := range procs {
				wg.Go(func() {
					if err := saveProfile(ctx, addr, q, name("cpu", proc, "pb.gz")); err != nil {
						e.logf("CPU profile of the %s: %v", proc, err)
					}
				})
			}
			wg.Wait()
		}
	}
}

// profilec fetches profiles: a CPU profile answers after its length,
// longer than httpc waits.
var profilec = &http.Client{Transport: httpc.Transport, Timeout: 2 * time.Minute}

// saveProfile writes addr's /debug/pprof/<profile> (with its query) to
// name.
func saveProfile(ctx context.Context, addr, profile, name string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/debug/pprof/"+profile, nil)
	if err != nil {
		return err
	}
	resp, err := profilec.Do(req)
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
