package loki

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkDispatcherHandle is one producer handing 260-byte lines over 10
// streams to a dispatcher whose Loki answers at once: Handle, the memory
// queue and the sender's batching, encoding and push, end to end, until
// Stop delivered everything. A full queue makes the producer offer the
// entry again (TryHandle), so nothing is dropped.
func BenchmarkDispatcherHandle(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	cfg := DefaultConfig()
	cfg.URL = srv.URL + "/loki/api/v1/push"
	cfg.BatchWait = 10 * time.Millisecond
	cfg.QueueBytes = 8 << 20
	d, err := New(cfg, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer d.Release()
	streams := make([]string, 10)
	for i := range streams {
		streams[i] = `{container_name="bench-` + strconv.Itoa(i) + `", source="stdout"}`
	}
	line := strings.Repeat("a log line of a benchmark ", 10)
	b.SetBytes(int64(len(line)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e := Entry{Stream: streams[i%len(streams)], TimeNano: int64(i), Line: line}
		for d.TryHandle(e) != nil {
			runtime.Gosched()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := d.Stop(ctx); err != nil {
		b.Fatal(err)
	}
}
