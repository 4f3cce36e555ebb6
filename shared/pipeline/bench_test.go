package pipeline

import (
	"strings"
	"testing"
	"time"

	"github.com/logferry/logferry/shared/labels"
	"github.com/logferry/logferry/shared/metadata"
)

// benchSet is a realistic container label set, as the labels package
// builds it for both capture styles (streams precomputed).
var benchSet = func() labels.Set {
	b, err := labels.NewBuilder(labels.DefaultConfig(), "node-17")
	if err != nil {
		panic(err)
	}
	s, err := b.Build(metadata.Container{
		ID: strings.Repeat("ab", 32), Name: "/shop-api-1", ImageName: "shop/api:1.4.2",
		ImageID: "sha256:" + strings.Repeat("cd", 32),
		Labels:  map[string]string{metadata.LabelComposeProject: "shop", metadata.LabelComposeService: "api"},
	})
	if err != nil {
		panic(err)
	}
	return s
}()

// benchProcess runs lines (cycled) through p as a caller would: Reset,
// Process, Stream. One op is one line; SetBytes is the mean line length.
func benchProcess(b *testing.B, p *Pipeline, lines []string) {
	b.Helper()
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	b.SetBytes(int64(total / len(lines)))
	b.ReportAllocs()
	if p != nil {
		p = p.Instance(NewMetrics(nil))
		p.now = func() time.Time { return t0 }
	}
	var e Entry
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		e.Reset(&benchSet, labels.SourceStdout, int64(i), lines[i%len(lines)])
		p.Process(&e)
		if !e.Dropped {
			_ = p.Stream(&e, &benchSet)
		}
	}
}

func benchParse(b *testing.B, yaml string) *Pipeline {
	b.Helper()
	p, err := Parse(yaml)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

var plainLines = []string{
	`2024-05-01T10:00:00.123Z INFO  [http-nio-8080-exec-3] c.e.shop.api.OrderController : order 81723 created for customer 5521 in 12ms`,
	`2024-05-01T10:00:00.456Z WARN  [http-nio-8080-exec-7] c.e.shop.api.StockService : stock for sku 7781-XL below threshold (3 left)`,
}

var levelLines = []string{
	`ts=2024-05-01T10:00:00.123Z level=info caller=orders.go:81 msg="order created" order=81723 customer=5521 took=12ms`,
	`ts=2024-05-01T10:00:00.456Z level=warn caller=stock.go:44 msg="stock below threshold" sku=7781-XL left=3`,
	`ts=2024-05-01T10:00:00.789Z level=error caller=pay.go:120 msg="payment declined" order=81724 code=51`,
}

var jsonLines = []string{
	`{"time":"2024-05-01T10:00:00.123Z","level":"info","logger":"orders","msg":"order created","order_id":81723,"customer":5521,"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","took_ms":12}`,
	`{"time":"2024-05-01T10:00:00.456Z","level":"warn","logger":"stock","msg":"stock below threshold","sku":"7781-XL","left":3,"trace_id":"5cf92f3577b34da6a3ce929d0e0e4737","span_id":"10f067aa0ba902b8"}`,
}

func BenchmarkProcessEmpty(b *testing.B) {
	benchProcess(b, nil, plainLines)
}

// BenchmarkRegexLabels is the Loki driver's documented pipeline.
func BenchmarkRegexLabels(b *testing.B) {
	benchProcess(b, benchParse(b, `
- regex:
    expression: '(level|lvl|severity)=(?P<level>\w+)'
- labels:
    level:
`), levelLines)
}

func BenchmarkJSONStructuredMetadata(b *testing.B) {
	benchProcess(b, benchParse(b, `
- json:
    expressions:
      level:
      trace_id:
      msg:
- labels:
    level:
- structured_metadata:
    trace_id:
`), jsonLines)
}

func BenchmarkJSONJMESPath(b *testing.B) {
	benchProcess(b, benchParse(b, `
- json:
    expressions:
      level: 'level'
      short: 'join(''-'', [logger, level])'
- labels:
    level:
`), jsonLines)
}

func BenchmarkLogfmtLabels(b *testing.B) {
	benchProcess(b, benchParse(b, "- logfmt: {mapping: {level: , caller: }}\n- labels: {level: }"), levelLines)
}

func BenchmarkDropMatch(b *testing.B) {
	benchProcess(b, benchParse(b, `
- drop: {expression: 'GET /health'}
- match:
    selector: '{compose_service="api"} |= "payment"'
    action: drop
`), levelLines)
}

func BenchmarkTimestamp(b *testing.B) {
	benchProcess(b, benchParse(b, "- regex: {expression: '^ts=(?P<ts>\\S+)'}\n- timestamp: {source: ts, format: RFC3339Nano}"), levelLines)
}

func BenchmarkTemplateOutput(b *testing.B) {
	benchProcess(b, benchParse(b, "- logfmt: {mapping: {level: , msg: }}\n- template: {source: out, template: '{{ ToUpper .level }}: {{ .msg }}'}\n- output: {source: out}"), levelLines)
}

func BenchmarkReplace(b *testing.B) {
	benchProcess(b, benchParse(b, "- replace: {expression: 'customer=(\\d+)', replace: '***'}"), levelLines)
}

func BenchmarkDecolorize(b *testing.B) {
	benchProcess(b, benchParse(b, "- decolorize:"), []string{"\x1b[32mINFO\x1b[0m " + plainLines[0], plainLines[1]})
}

// javaStream is normal lines with a Java stack trace between them.
func javaStream() []string {
	var lines []string
	lines = append(lines, plainLines...)
	lines = append(lines, `2024-05-01T10:00:01.000Z ERROR [http-nio-8080-exec-9] c.e.shop.api.PaymentController : payment failed`)
	lines = append(lines, `java.lang.IllegalStateException: gateway timeout after 3000ms`)
	for i := range 20 {
		lines = append(lines, "\tat com.example.shop.payment.GatewayClient.call(GatewayClient.java:"+strings.Repeat("1", 1+i%3)+")")
	}
	lines = append(lines, "Caused by: java.net.SocketTimeoutException: Read timed out")
	lines = append(lines, "\tat java.base/java.net.SocketInputStream.socketRead0(Native Method)")
	lines = append(lines, "\t... 18 more")
	lines = append(lines, plainLines...)
	return lines
}

// BenchmarkMultilineJava pushes a stream of lines with Java traces through
// the java preset; one op is one line in.
func BenchmarkMultilineJava(b *testing.B) {
	lines := javaStream()
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	cfg, err := MultilinePreset(PresetJava)
	if err != nil {
		b.Fatal(err)
	}
	ml := NewMultiline(cfg, NewMetrics(nil))
	b.SetBytes(int64(total / len(lines)))
	b.ReportAllocs()
	out := make([]Joined, 0, 4)
	var e Entry
	for i := 0; b.Loop(); i++ {
		out = ml.Push(out[:0], t0, labels.SourceStdout, int64(i), lines[i%len(lines)], int64(i))
		for _, j := range out {
			e.Reset(&benchSet, j.Source, j.TimeNano, j.Line)
		}
	}
}
