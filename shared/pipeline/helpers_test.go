package pipeline

import (
	"maps"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/logferry/logferry/shared/labels"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// baseSet is a container's label set as the labels package builds it.
var baseSet = labels.Set{
	Labels: []labels.Pair{
		{Name: "container_name", Value: "web"},
		{Name: "host", Value: "h1"},
	},
	StructuredMetadata: []labels.Pair{
		{Name: "container_id", Value: "0123456789ab"},
	},
}

// t0 is the fixed clock of the tests.
var t0 = time.Date(2020, 8, 12, 12, 0, 0, 0, time.UTC)

// mustParse parses yaml and fixes the instance's clock at *clock (t0 if
// clock is nil).
func mustParse(t testing.TB, yaml string) *Pipeline {
	t.Helper()
	p, err := Parse(yaml)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, yaml)
	}
	if p != nil {
		p.now = func() time.Time { return t0 }
	}
	return p
}

// run processes line in a fresh entry of baseSet's stream from stdout.
func run(p *Pipeline, line string) *Entry {
	e := &Entry{}
	e.Reset(&baseSet, labels.SourceStdout, t0.UnixNano(), line)
	p.Process(e)
	return e
}

// labelMap returns e's labels, source included, as a map.
func labelMap(e *Entry) map[string]string {
	m := map[string]string{}
	for _, l := range e.Labels {
		m[l.Name] = l.Value
	}
	if e.Source != "" {
		m["source"] = e.Source
	}
	return m
}

func metadataMap(e *Entry) map[string]string {
	m := map[string]string{}
	for _, l := range e.StructuredMetadata {
		m[l.Name] = l.Value
	}
	return m
}

// withBase returns the base labels (and source=stdout) plus extra.
func withBase(extra map[string]string) map[string]string {
	m := map[string]string{"container_name": "web", "host": "h1", "source": "stdout"}
	maps.Copy(m, extra)
	return m
}
