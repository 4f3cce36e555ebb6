package bench

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/logferry/logferry/internal/loggen"
	"github.com/logferry/logferry/plugin"
	"github.com/logferry/logferry/shared/logopts"
	"github.com/logferry/logferry/shared/loki"
)

var (
	heapProfile = flag.String("heap-profile", "", "TestIdleHeapProfile: write the heap profile of idle streams to this file (the test is skipped without it)")
	heapStreams = flag.Int("heap-streams", 500, "TestIdleHeapProfile: streams")
	heapLines   = flag.Int("heap-lines", 200, "TestIdleHeapProfile: lines each stream writes, in one write, before it goes quiet")
)

// TestIdleHeapProfile runs the plugin's Driver in this process (the plugin
// binary has no profiling endpoint) with idle streams and writes a heap
// profile of what they hold, after a GC:
//
//	go test ./bench -run TestIdleHeapProfile -heap-profile /tmp/idle.heap
//	go tool pprof -sample_index=inuse_space -top /tmp/idle.heap
func TestIdleHeapProfile(t *testing.T) {
	if *heapProfile == "" {
		t.Skip("set -heap-profile FILE to profile idle streams in process")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
	sink, err := NewSink()
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	reg := prometheus.NewRegistry()
	pool := loki.NewPool(loki.NewMetrics(reg), nil, 0)
	state, err := plugin.NewState(filepath.Join(dir, "streams"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := plugin.NewFileStore(filepath.Join(dir, "logs"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defaults := logopts.Defaults()
	defaults.Loki.URL = sink.URL()
	d := plugin.NewDriver(plugin.Config{Defaults: defaults, Host: "bench"}, pool, state, store, plugin.NewMetrics(reg), nil)
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		d.Shutdown(sctx)
	}()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	writers := make([]*os.File, 0, *heapStreams)
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	for i := range *heapStreams {
		fifo := filepath.Join(dir, fmt.Sprintf("%d.fifo", i))
		if err := MakeFIFO(fifo); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("/idle-%04d", i)
		if err := d.StartLogging(fifo, ContainerInfo(name, nil)); err != nil {
			t.Fatal(err)
		}
		w, err := OpenWriter(fifo)
		if err != nil {
			t.Fatal(err)
		}
		writers = append(writers, w)
		fr, err := EncodeFrames(loggen.Config{ID: name[1:], Lines: uint64(*heapLines), Size: 250}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(fr.Buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := sink.WaitEntries(ctx, int64(*heapStreams**heapLines), nil); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	f, err := os.Create(*heapProfile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d idle streams (%d lines each): Go heap in use %.1f MiB -> %.1f MiB after GC (%.1f KiB per stream); profile in %s",
		*heapStreams, *heapLines, MiB(int64(before.HeapInuse)), MiB(int64(after.HeapInuse)),
		float64(after.HeapInuse-before.HeapInuse)/float64(*heapStreams)/1024, *heapProfile)
}
