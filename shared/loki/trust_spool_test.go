package loki_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/logferry/logferry/shared/loki"
)

// TestSpoolKeepsWhatLokiDidNotAcknowledge: while the endpoint answers with a
// redirect, 401, 403 or a 2xx that is not Loki's acknowledgement, nothing is
// lost: batches go to the spool like during a 5xx outage, and once Loki
// answers again every line arrives exactly once, in order.
func TestSpoolKeepsWhatLokiDidNotAcknowledge(t *testing.T) {
	for _, code := range []int{http.StatusFound, http.StatusPermanentRedirect, http.StatusUnauthorized, http.StatusForbidden, http.StatusAccepted} {
		t.Run(fmt.Sprint(code), func(t *testing.T) {
			f := newFlakyLoki(t)
			var other atomic.Int64
			elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				other.Add(1)
				w.WriteHeader(http.StatusNoContent)
			}))
			defer elsewhere.Close()
			var failing atomic.Bool
			failing.Store(true)
			var refused atomic.Int64
			front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !failing.Load() {
					f.serve(w, r)
					return
				}
				refused.Add(1)
				w.Header().Set("Location", elsewhere.URL+"/loki/api/v1/push")
				w.WriteHeader(code)
			}))
			defer front.Close()

			reg := prometheus.NewRegistry()
			set, opened := spoolSet(t, t.TempDir(), reg)
			d, err := loki.New(spoolConfig(front.URL+"/loki/api/v1/push"), loki.NewMetrics(reg), nil, loki.WithSpools(set))
			if err != nil {
				t.Fatal(err)
			}
			p := newProducer()
			p.handle(t, d, 3000) // far more than the queue holds
			waitUntil(t, "spooling mode", func() bool {
				return testutil.ToFloat64(spoolingGauge(t, reg)) == 1
			})
			p.handle(t, d, 500)
			if f.count() != 0 {
				t.Fatalf("%d lines counted as delivered while the endpoint answered %d", f.count(), code)
			}
			failing.Store(false)
			p.handle(t, d, 500)
			waitUntil(t, "every entry delivered", func() bool { return f.count() >= p.total() })
			stop(t, d, 10*time.Second)
			f.checkExactlyOnce(t, wantAll(p))
			if n := other.Load(); n != 0 {
				t.Errorf("the redirect's target received %d requests", n)
			}
			if got := counterValue(t, reg, "logferry_loki_entries_dropped_total"); got != 0 {
				t.Errorf("%v entries dropped", got)
			}
			st := (*opened)[0].Stats()
			t.Logf("%d pushes answered %d; spooled %d, acked %d of %d entries", refused.Load(), code, st.Appended, st.Acked, p.total())
			if st.Appended == 0 {
				t.Error("nothing was spooled")
			}
		})
	}
}
