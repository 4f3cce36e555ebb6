package plugin

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	"github.com/logferry/logferry/shared/dockerlog"
)

// BenchmarkStreamRead is a stream's own work per frame, from the FIFO's
// bytes to the dispatcher's queue, with the local copy for docker logs
// kept: the part of fifobench's flat-out figure that the plugin's reader
// goroutine does, without the process, the pipe and Loki around it. The
// frames come from memory in the decoder's 32 KiB reads, as a busy FIFO
// gives them; 250-byte lines, every third on stderr. Its allocations per
// frame are exact whatever else the machine does; for a cost that is too,
// count instructions in the reader alone:
//
//	go test -c -o /tmp/plugin.test ./plugin/
//	valgrind --tool=callgrind --toggle-collect='*stream).read' /tmp/plugin.test \
//	    -test.run '^$' -test.bench BenchmarkStreamRead -test.benchtime 200000x
func BenchmarkStreamRead(b *testing.B) {
	sk := newSink(b)
	sk.discard = true
	e := newEnvStore(b, b.TempDir(), sk, true)
	var buf []byte
	line := bytes.Repeat([]byte("x"), 250)
	for i := 0; i < b.N; i++ {
		src := "stdout"
		if i%3 == 0 {
			src = "stderr"
		}
		copy(line, fmt.Sprintf("line %09d ", i))
		buf = dockerlog.AppendFrame(buf, &dockerlog.Frame{Source: src, TimeNano: int64(1700000000000000000 + i), Line: line})
	}
	e.driver.mu.Lock()
	s, err := e.driver.buildStream("bench-fifo", e.info("bench", nil), false, true)
	if err != nil {
		e.driver.mu.Unlock()
		b.Fatal(err)
	}
	s.fifo = io.NopCloser(bytes.NewReader(buf))
	b.SetBytes(int64(len(buf) / b.N))
	b.ReportAllocs()
	b.ResetTimer()
	e.driver.launch(s)
	e.driver.mu.Unlock()
	<-s.done
	b.StopTimer()
	<-s.resolved // Loki (the sink) acknowledged the last line
	for _, name := range []string{"logferry_plugin_frames_read_total", "logferry_loki_entries_sent_total"} {
		if got := testCounter(e.reg, name); got != float64(b.N) {
			b.Fatalf("%s = %v, want %d", name, got, b.N)
		}
	}
	e.driver.Shutdown(context.Background())
}
