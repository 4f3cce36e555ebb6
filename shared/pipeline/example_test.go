package pipeline_test

import (
	"fmt"
	"time"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/metadata"
	"github.com/logferry/logferry/shared/pipeline"
)

// Example shows what a capture style does with each joined line of a
// container: multiline first, then the stages, then the final cut, with
// acknowledgements by Joined.Ack.
func Example() {
	p, err := pipeline.Parse(`
- multiline:
    firstline: '^\d{4}-'
- regex:
    expression: '(level|lvl|severity)=(?P<level>\w+)'
- labels:
    level:
- drop:
    expression: 'GET /health'
    drop_counter_reason: health
`)
	if err != nil {
		panic(err)
	}
	b, _ := labels.NewBuilder(labels.DefaultConfig(), "h1")
	set, _ := b.Build(metadata.Container{Name: "/web"})

	// Once per container: an instance and a joiner (nil metrics: not
	// counted, for the example).
	inst := p.Instance(nil)
	ml := pipeline.NewMultiline(p.Multiline(), nil)

	var e pipeline.Entry
	var acked int64 = -1
	handle := func(entries []pipeline.Joined) {
		for _, j := range entries {
			e.Reset(&set, j.Source, j.TimeNano, j.Line)
			inst.Process(&e)
			if e.Dropped {
				fmt.Printf("dropped (%s)\n", e.DropReason)
			} else {
				e.Finish(256 << 10)
				fmt.Printf("%s %q\n", inst.Stream(&e, &set), e.Line)
			}
			// A real caller hands the entry to the dispatcher with
			// Offset j.Ack and advances when the dispatcher acknowledges
			// it; a dropped entry resolves in order with the others.
			if j.AckOK {
				acked = j.Ack
			}
		}
	}
	now := time.Now()
	lines := []string{
		"2024-05-01 level=error payment failed",
		"java.lang.IllegalStateException: timeout",
		"\tat com.example.Pay.call(Pay.java:12)",
		"2024-05-01 level=info GET /health 200",
		"2024-05-01 level=info order created",
	}
	for i, line := range lines {
		handle(ml.Push(nil, now, "stdout", now.UnixNano(), line, int64(i)))
	}
	fmt.Println("acknowledged up to line", acked, "- pending", ml.Pending())
	handle(ml.FlushAll(nil)) // at container stop; Flush(now) on a timer at ml.Deadline()
	fmt.Println("acknowledged up to line", acked, "- pending", ml.Pending())
	// Output:
	// {container_name="web", host="h1", level="error", source="stdout"} "2024-05-01 level=error payment failed\njava.lang.IllegalStateException: timeout\n\tat com.example.Pay.call(Pay.java:12)"
	// dropped (health)
	// acknowledged up to line 3 - pending 1
	// {container_name="web", host="h1", level="info", source="stdout"} "2024-05-01 level=info order created"
	// acknowledged up to line 4 - pending 0
}
