package loki

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func slogTo(b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.URL = "https://bob:hunter2@loki.example:3100/loki/api/v1/push"
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		change func(c *Config)
		key    string
	}{
		{"no url", func(c *Config) { c.URL = "" }, "loki-url"},
		{"bad scheme", func(c *Config) { c.URL = "ftp://bob:hunter2@x/" }, "loki-url"},
		{"no host", func(c *Config) { c.URL = "http:///push" }, "loki-url"},
		{"unparsable", func(c *Config) { c.URL = "http://bob:hunter2@[::1" }, "loki-url"},
		{"batch size", func(c *Config) { c.BatchSize = 0 }, "loki-batch-size"},
		{"batch wait", func(c *Config) { c.BatchWait = 0 }, "loki-batch-wait"},
		{"timeout", func(c *Config) { c.Timeout = -time.Second }, "loki-timeout"},
		{"min backoff", func(c *Config) { c.MinBackoff = 0 }, "loki-min-backoff"},
		{"max below min", func(c *Config) { c.MaxBackoff = time.Millisecond }, "loki-max-backoff"},
		{"retries", func(c *Config) { c.Retries = -1 }, "loki-retries"},
		{"queue", func(c *Config) { c.QueueBytes = 10 }, "loki-queue-size"},
		{"cert without key", func(c *Config) { c.TLSCertFile = "/x" }, "loki-tls-cert-file"},
		{"proxy", func(c *Config) { c.ProxyURL = "::" }, "loki-proxy-url"},
		{"tenant", func(c *Config) { c.TenantID = "a\nb" }, "loki-tenant-id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("got %v, want ErrInvalidConfig", err)
			}
			if !strings.HasPrefix(err.Error(), tt.key+":") {
				t.Fatalf("error %q does not name %s", err, tt.key)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Fatalf("error %q leaks the password", err)
			}
		})
	}
	if e := ok.Endpoint(); strings.Contains(e, "hunter2") || strings.Contains(e, "bob") {
		t.Fatalf("Endpoint() %q leaks credentials", e)
	}
}

func TestNewReportsUnreadableFiles(t *testing.T) {
	c := testConfig("http://127.0.0.1:1/push")
	c.BearerTokenFile = t.TempDir() + "/missing"
	if _, err := New(c, nil, nil); err == nil || !strings.HasPrefix(err.Error(), "loki-bearer-token-file:") {
		t.Fatalf("got %v", err)
	}
	c = testConfig("http://127.0.0.1:1/push")
	c.TLSCAFile = t.TempDir() + "/missing.pem"
	if _, err := New(c, nil, nil); err == nil || !strings.HasPrefix(err.Error(), "loki-tls-ca-file:") {
		t.Fatalf("got %v", err)
	}
}

func TestPoolSharesOneDispatcherPerConfig(t *testing.T) {
	loki := newFakeLoki(t)
	reg := prometheus.NewRegistry()
	pool := NewPool(NewMetrics(reg), nil, time.Minute)
	cfgA := testConfig(loki.url())
	cfgB := cfgA
	cfgB.TenantID = "other"
	var got []*Dispatcher
	for i := 0; i < 100; i++ {
		d, err := pool.Acquire(cfgA)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, d)
	}
	b, err := pool.Acquire(cfgB)
	if err != nil {
		t.Fatal(err)
	}
	if pool.Len() != 2 {
		t.Fatalf("%d dispatchers for 2 configurations", pool.Len())
	}
	for _, d := range got[1:] {
		if d != got[0] {
			t.Fatal("same configuration, different dispatchers")
		}
	}
	if err := got[0].Handle(Entry{Stream: `{a="b"}`, TimeNano: 1, Line: "last words"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range got {
		pool.Release(d)
	}
	if pool.Len() != 1 {
		t.Fatalf("%d dispatchers after releasing A", pool.Len())
	}
	// The released dispatcher drains in the background: its entry arrives.
	<-got[0].Done()
	if n := len(loki.received()[`{a="b"}`]); n != 1 {
		t.Fatalf("%d entries delivered after release", n)
	}
	pool.Release(b)
	pool.Close(context.Background())
	// The queue gauges of both endpoints are gone; what was sent stays.
	if n := testutil.CollectAndCount(reg, "logferry_loki_queue_bytes", "logferry_loki_queue_entries"); n != 0 {
		t.Fatalf("%d queue gauge series left after all dispatchers stopped", n)
	}
	if n := testutil.CollectAndCount(reg, "logferry_loki_entries_sent_total"); n != 2 {
		t.Fatalf("%d entries-sent series after all dispatchers stopped, want one per endpoint", n)
	}
	if _, err := pool.Acquire(cfgA); !errors.Is(err, ErrStopped) {
		t.Fatalf("Acquire after Close: %v", err)
	}
}

func benchBatch(streams, perStream, lineSize int) *batch {
	b := newBatch()
	line := strings.Repeat("a", lineSize)
	meta := []LabelPairAdapter{{Name: "container_id", Value: strings.Repeat("f", 64)}}
	for i := 0; i < perStream; i++ {
		for s := 0; s < streams; s++ {
			b.add(Entry{Stream: fmt.Sprintf(`{container_name="svc-%d", host="h", source="stdout"}`, s),
				TimeNano: 1700000000000000000 + int64(i), Line: line, Metadata: meta})
		}
	}
	return b
}

// BenchmarkBatchEncode measures protobuf encoding plus snappy of a 1 MiB
// batch, in line bytes per second.
func BenchmarkBatchEncode(b *testing.B) {
	for _, streams := range []int{1, 50} {
		b.Run(fmt.Sprintf("streams=%d", streams), func(b *testing.B) {
			src := benchBatch(streams, (1<<20)/250/streams, 250)
			entries := append([]Entry(nil), src.entries...)
			b.SetBytes(int64(lineBytes(src)))
			b.ReportAllocs()
			bt := newBatch()
			for i := 0; i < b.N; i++ {
				bt.reset()
				for _, e := range entries {
					bt.add(e)
				}
				if _, err := bt.encode(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestBatchEncodeRoundTrip(t *testing.T) {
	b := benchBatch(3, 5, 10)
	b.entries[0].TimeNano = -1500000000 // before 1970: floor division
	body, err := b.encode()
	if err != nil {
		t.Fatal(err)
	}
	req := decodeBody(t, body)
	if len(req.Streams) != 3 || len(req.Streams[0].Entries) != 5 {
		t.Fatalf("streams %d", len(req.Streams))
	}
	if ts := req.Streams[0].Entries[0].Timestamp; ts.Seconds != -2 || ts.Nanos != 500000000 {
		t.Fatalf("negative timestamp encoded as %+v", ts)
	}
	// Reuse: a second encode after reset yields the same bytes.
	entries := append([]Entry(nil), b.entries...)
	first := append([]byte(nil), body...)
	b.reset()
	for _, e := range entries {
		b.add(e)
	}
	again, err := b.encode()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(first) {
		t.Fatal("re-encoding a reset batch differs")
	}
}
