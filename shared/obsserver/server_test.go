package obsserver

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, tt := range []struct {
		pprof bool
		path  string
		want  int
	}{
		{false, "/debug/pprof/", http.StatusNotFound},
		{false, "/debug/pprof/goroutine?debug=1", http.StatusNotFound},
		{false, "/debug/pprof/profile?seconds=1", http.StatusNotFound},
		{true, "/debug/pprof/", http.StatusOK},
		{true, "/debug/pprof/goroutine?debug=1", http.StatusOK},
		{true, "/debug/pprof/profile?seconds=3600", http.StatusBadRequest},
		{true, "/debug/pprof/trace?seconds=61", http.StatusBadRequest},
		{true, "/metrics", http.StatusOK},
	} {
		mux := http.NewServeMux()
		mux.HandleFunc("/metrics", func(http.ResponseWriter, *http.Request) {})
		srv := New(mux, Options{Pprof: tt.pprof})
		rec := httptest.NewRecorder()
		srv.Handler.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, tt.path, nil))
		if rec.Code != tt.want {
			t.Errorf("pprof=%v %s: %d, want %d", tt.pprof, tt.path, rec.Code, tt.want)
		}
	}
}

func TestServerLimits(t *testing.T) {
	srv := New(http.NewServeMux(), Options{})
	if srv.ReadHeaderTimeout == 0 || srv.ReadTimeout == 0 || srv.WriteTimeout == 0 || srv.IdleTimeout == 0 || srv.MaxHeaderBytes == 0 {
		t.Fatalf("a limit is unset: %+v", srv)
	}
	ts := httptest.NewUnstartedServer(srv.Handler)
	ts.Config = srv
	ts.Start()
	defer ts.Close()
	req, _ := http.NewRequest(http.MethodGet, ts.URL+"/metrics", nil)
	big := make([]byte, 2*MaxHeaderBytes)
	for i := range big {
		big[i] = 'a'
	}
	req.Header.Set("X-Big", string(big))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a %d-byte header: %d, want 431", len(big), resp.StatusCode)
	}
}

// TestPprofSamplesHeapFiner: pprof on makes heap profiles sample every 64
// KiB; pprof off leaves Go's rate alone (no cost for operators who do not
// profile).
func TestPprofSamplesHeapFiner(t *testing.T) {
	old := runtime.MemProfileRate
	t.Cleanup(func() { runtime.MemProfileRate = old })
	runtime.MemProfileRate = 512 << 10
	SampleHeapFiner(Options{})
	if runtime.MemProfileRate != 512<<10 {
		t.Fatalf("pprof off changed MemProfileRate to %d", runtime.MemProfileRate)
	}
	SampleHeapFiner(Options{Pprof: true})
	if runtime.MemProfileRate != PprofMemProfileRate {
		t.Fatalf("pprof on: MemProfileRate %d, want %d", runtime.MemProfileRate, PprofMemProfileRate)
	}
}
