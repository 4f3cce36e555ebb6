package pipeline

import (
	"crypto/sha256"
	"crypto/sha3"
	"encoding/hex"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// stageCase is one documented example: a pipeline, a line, and what the
// documentation says comes out.
type stageCase struct {
	name      string
	yaml      string
	line      string
	extracted map[string]any    // subset of Extracted that must hold
	labels    map[string]string // exact labels (source included), if not nil
	metadata  map[string]string // exact structured metadata, if not nil
	out       *string           // the line after, if not nil
	dropped   string            // drop reason, "" if kept
	time      *time.Time
	tenant    string
}

func str(s string) *string { return &s }

func sha2Hex(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
func sha3Hex(s string) string { h := sha3.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }

func (c stageCase) check(t *testing.T, e *Entry) {
	t.Helper()
	for k, want := range c.extracted {
		if got, ok := e.Extracted(k); !ok || !reflect.DeepEqual(got, want) {
			t.Errorf("extracted[%q] = %#v (present %v), want %#v", k, got, ok, want)
		}
	}
	if c.labels != nil && !maps.Equal(labelMap(e), c.labels) {
		t.Errorf("labels = %v, want %v", labelMap(e), c.labels)
	}
	if c.metadata != nil && !maps.Equal(metadataMap(e), c.metadata) {
		t.Errorf("structured metadata = %v, want %v", metadataMap(e), c.metadata)
	}
	if c.out != nil && e.Line != *c.out {
		t.Errorf("line = %q, want %q", e.Line, *c.out)
	}
	if e.Dropped != (c.dropped != "") || e.DropReason != c.dropped {
		t.Errorf("dropped = %v (%q), want %q", e.Dropped, e.DropReason, c.dropped)
	}
	if c.time != nil && e.Time != c.time.UnixNano() {
		t.Errorf("time = %v, want %v", time.Unix(0, e.Time).UTC(), c.time.UTC())
	}
	if e.Tenant != c.tenant {
		t.Errorf("tenant = %q, want %q", e.Tenant, c.tenant)
	}
}

func runCases(t *testing.T, cases []stageCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := mustParse(t, c.yaml)
			c.check(t, run(p, c.line))
		})
	}
}

func TestDriverExample(t *testing.T) {
	// The Loki Docker driver's documented pipeline (configuration page).
	runCases(t, []stageCase{{
		name: "regex+labels",
		yaml: `
- regex:
    expression: '(level|lvl|severity)=(?P<level>\w+)'
- labels:
    level:
`,
		line:   `ts=2024-01-01 lvl=warn msg="disk almost full"`,
		labels: withBase(map[string]string{"level": "warn"}),
		out:    str(`ts=2024-01-01 lvl=warn msg="disk almost full"`),
	}, {
		name: "stage file form",
		yaml: "pipeline_stages:\n- regex:\n     expression: '(level|lvl|severity)=(?P<level>\\w+)'\n- labels:\n    level:\n",
		line: "severity=error boom", labels: withBase(map[string]string{"level": "error"}),
	}})
}

func TestRegexStage(t *testing.T) {
	runCases(t, []stageCase{{
		name: "without source",
		yaml: `
- regex:
    expression: "^(?s)(?P<time>\\S+?) (?P<stream>stdout|stderr) (?P<flags>\\S+?) (?P<content>.*)$"
`,
		line: "2019-01-01T01:00:00.000000001Z stderr P i'm a log message!",
		extracted: map[string]any{
			"time": "2019-01-01T01:00:00.000000001Z", "stream": "stderr", "flags": "P", "content": "i'm a log message!",
		},
	}, {
		name: "with source",
		yaml: `
- json:
    expressions:
      time:
- regex:
    expression: "^(?P<year>\\d+)"
    source:     "time"
`,
		line:      `{"time":"2019-01-01T01:00:00.000000001Z"}`,
		extracted: map[string]any{"time": "2019-01-01T01:00:00.000000001Z", "year": "2019"},
	}, {
		name:      "no match extracts nothing",
		yaml:      "- regex: {expression: '^(?P<n>\\d+)$'}",
		line:      "abc",
		extracted: map[string]any{},
		labels:    withBase(nil),
	}, {
		name:      "source is a label",
		yaml:      "- regex: {expression: '^(?P<first>.)', source: container_name}",
		line:      "x",
		extracted: map[string]any{"first": "w"},
	}})
}

func TestJSONStage(t *testing.T) {
	runCases(t, []stageCase{{
		name: "using log line",
		yaml: `
- json:
    expressions:
      output: log
      stream: stream
      timestamp: time
`,
		line: `{"log":"log message\n","stream":"stderr","time":"2019-04-30T02:12:41.8443515Z"}`,
		extracted: map[string]any{
			"output": "log message\n", "stream": "stderr", "timestamp": "2019-04-30T02:12:41.8443515Z",
		},
	}, {
		name: "using extracted data",
		yaml: `
- json:
    expressions:
      output:    log
      stream:    stream
      timestamp: time
      extra:
- json:
    expressions:
      user:
    source: extra
`,
		line:      `{"log":"log message\n","stream":"stderr","time":"2019-04-30T02:12:41.8443515Z","extra":"{\"user\":\"marco\"}"}`,
		extracted: map[string]any{"extra": `{"user":"marco"}`, "user": "marco", "stream": "stderr"},
	}, {
		name: "JMESPath literal",
		yaml: `
- json:
    expressions:
      output: log
      stream: '"grpc.stream"'
      timestamp: time
`,
		line:      `{"log":"log message\n","grpc.stream":"stderr","time":"2019-04-30T02:12:41.8443515Z"}`,
		extracted: map[string]any{"output": "log message\n", "stream": "stderr"},
	}, {
		name: "types, nesting and complex values",
		yaml: `
- json:
    expressions:
      n: n
      b: b
      nested: a.b.c
      obj: o
      arr: l
      missing: nope
      nullv: z
`,
		line: `{"n": 125, "b": true, "a": {"b": {"c": "deep"}}, "o": {"y": 1, "x": "<&>"}, "l": [1,"two"], "z": null}`,
		extracted: map[string]any{
			"n": 125.0, "b": true, "nested": "deep", "obj": `{"x":"\u003c\u0026\u003e","y":1}`, "arr": `[1,"two"]`,
		},
	}, {
		name: "JMESPath functions and projections",
		yaml: `
- json:
    expressions:
      first: 'items[0].name'
      count: 'length(items)'
      names: 'items[*].name'
      level: level
`,
		line:      `{"level":"info","items":[{"name":"a"},{"name":"b"}]}`,
		extracted: map[string]any{"first": "a", "count": 2.0, "names": `["a","b"]`, "level": "info"},
	}, {
		name:      "escapes decoded",
		yaml:      "- json: {expressions: {msg: msg, \"k\": \"\\\"k\\\\u0041\\\"\"}}",
		line:      `{"msg":"a\tb \u00e9 \ud83d\ude00 \ud800","k\u0041":"v"}`,
		extracted: map[string]any{"msg": "a\tb é 😀 \uFFFD"},
	}, {
		name: "malformed is counted and kept",
		yaml: "- json: {expressions: {msg: }}",
		line: `{"msg": "x"`, out: str(`{"msg": "x"`),
	}, {
		name: "malformed with drop_malformed",
		yaml: "- json: {expressions: {msg: }, drop_malformed: true}",
		line: `not json`, dropped: ReasonMalformedJSON,
	}, {
		name: "an array is not an object",
		yaml: "- json: {expressions: {msg: }, drop_malformed: true}",
		line: `[1,2]`, dropped: ReasonMalformedJSON,
	}, {
		name: "jmespath path on malformed",
		yaml: "- json: {expressions: {n: 'length(a)'}, drop_malformed: true}",
		line: `{"a": [1,]}`, dropped: ReasonMalformedJSON,
	}})
}

func TestLogfmtStage(t *testing.T) {
	runCases(t, []stageCase{{
		name: "using log line",
		yaml: `
- logfmt:
    mapping:
      timestamp: time
      app:
      duration:
      unknown:
`,
		line:      `time=2012-11-01T22:08:41+00:00 app=loki level=WARN duration=125 message="this is a log line" extra="user=foo""`,
		extracted: map[string]any{"timestamp": "2012-11-01T22:08:41+00:00", "app": "loki", "duration": "125"},
	}, {
		name: "using extracted data",
		yaml: `
- logfmt:
    mapping:
      extra:
- logfmt:
    mapping:
      user:
    source: extra
`,
		line:      `time=2012-11-01T22:08:41+00:00 app=loki level=WARN duration=125 message="this is a log line" extra="user=foo"`,
		extracted: map[string]any{"extra": "user=foo", "user": "foo"},
	}, {
		name:      "quotes, escapes, bare keys",
		yaml:      "- logfmt: {mapping: {msg: , flag: , q: }}",
		line:      `flag msg="say \"hi\"\n" q=""`,
		extracted: map[string]any{"msg": "say \"hi\"\n", "flag": "", "q": ""},
	}})
}

func TestLabelStages(t *testing.T) {
	runCases(t, []stageCase{{
		name: "labels",
		yaml: `
- json:
    expressions:
      stream: stream
- labels:
    stream:
`,
		line:   `{"log":"log message\n","stream":"stderr","time":"2019-04-30T02:12:41.8443515Z"}`,
		labels: withBase(map[string]string{"stream": "stderr"}),
	}, {
		name: "labels from another name, numbers",
		yaml: "- json: {expressions: {code: status}}\n- labels: {http_status: code}",
		line: `{"status": 404}`, labels: withBase(map[string]string{"http_status": "404"}),
	}, {
		name: "static_labels",
		yaml: `
- json:
    expressions:
      stream: stream
- labels:
    stream:
- static_labels:
    custom_key: custom_val
`,
		line:   `{"log":"log message\n","stream":"stderr","time":"2019-04-30T02:12:41.8443515Z"}`,
		labels: withBase(map[string]string{"stream": "stderr", "custom_key": "custom_val"}),
	}, {
		name: "structured_metadata from the line",
		yaml: `
- json:
    expressions:
      stream: stream
      traceID: traceID
- labels:
    stream:
- structured_metadata:
    traceID:
`,
		line:     `{"log":"log message\n","stream":"stderr","traceID":"0242ac120002","time":"2019-04-30T02:12:41.8443515Z"}`,
		labels:   withBase(map[string]string{"stream": "stderr"}),
		metadata: map[string]string{"container_id": "0123456789ab", "traceID": "0242ac120002"},
	}, {
		name:     "structured_metadata moves a label",
		yaml:     "- structured_metadata: {host: }",
		line:     "x",
		labels:   map[string]string{"container_name": "web", "source": "stdout"},
		metadata: map[string]string{"container_id": "0123456789ab", "host": "h1"},
	}, {
		name:   "labeldrop",
		yaml:   "- labeldrop: [host, nothere]",
		line:   "x",
		labels: map[string]string{"container_name": "web", "source": "stdout"},
	}, {
		name:   "labelallow",
		yaml:   "- labelallow:\n    - container_name\n    - source",
		line:   "x",
		labels: map[string]string{"container_name": "web", "source": "stdout"},
	}, {
		name:   "labelallow without source drops it",
		yaml:   "- labelallow: [host]",
		line:   "x",
		labels: map[string]string{"host": "h1"},
	}, {
		name:   "labels stage can set source",
		yaml:   "- static_labels: {source: audit}",
		line:   "x",
		labels: withBase(map[string]string{"source": "audit"}),
	}, {
		name:   "empty value sets no label",
		yaml:   "- json: {expressions: {lvl: }}\n- labels: {lvl: }",
		line:   `{"lvl": ""}`,
		labels: withBase(nil),
	}})
}

func TestDropStage(t *testing.T) {
	noisy := `{"time":"2019-01-01T01:00:00.000000001Z", "level": "error", "msg":"11.11.11.11 - \"POST /loki/api/push/ HTTP/1.1\" 200 932 \"-\" \"Mozilla/5.0\""}`
	upper := strings.Replace(noisy, `"error"`, `"ERROR"`, 1)
	info := strings.Replace(noisy, `"error"`, `"info"`, 1)
	// The documentation writes this expression in double quotes, where
	// "\/" is an escape go.yaml.in/yaml/v3 refuses; single quotes keep
	// the backslashes for the regex, which takes \/ as /.
	concat := `
- json:
    expressions:
     level:
     msg:
- drop:
    source:     ["level","msg"]
    separator:   "#"
    expression:  '(error|ERROR)#.*\/loki\/api\/push.*'

`
	value := `
- json:
    expressions:
     level:
     msg:
- drop:
    source: "level"
    value:  "error"
`
	old := `
- json:
    expressions:
     time:
     msg:
- timestamp:
    source: time
    format: RFC3339
- drop:
    older_than: 24h
    drop_counter_reason: "line_too_old"
`
	runCases(t, []stageCase{
		{name: "regex on line", yaml: "- drop:\n    expression: \".*debug.*\"", line: "a debug line", dropped: ReasonDropStage},
		{name: "regex on line, kept", yaml: "- drop:\n    expression: \".*debug.*\"", line: "an info line"},
		{name: "concatenated sources", yaml: concat, line: noisy, dropped: ReasonDropStage},
		{name: "concatenated sources upper", yaml: concat, line: upper, dropped: ReasonDropStage},
		{name: "concatenated sources kept", yaml: concat, line: info},
		{name: "value", yaml: value, line: noisy, dropped: ReasonDropStage},
		{name: "value kept", yaml: value, line: upper},
		{name: "older_than", yaml: old, line: `{"time":"2020-08-11T11:00:00Z", "level": "error"}`, dropped: "line_too_old"},
		{name: "older_than kept", yaml: old, line: `{"time":"2020-08-11T13:00:00Z", "level": "error"}`},
		{name: "longer_than", yaml: "- drop:\n    longer_than: 8kb\n    drop_counter_reason: \"line_too_long\"", line: strings.Repeat("x", 8193), dropped: "line_too_long"},
		{name: "longer_than kept", yaml: "- drop: {longer_than: 8kb}", line: strings.Repeat("x", 8192)},
		{name: "AND of regex and length", yaml: "- drop:\n    expression: \".*debug.*\"\n    longer_than: 1kb", line: "debug short"},
		{name: "AND of regex and length, both", yaml: "- drop:\n    expression: \".*debug.*\"\n    longer_than: 1kb", line: "debug " + strings.Repeat("y", 1024), dropped: ReasonDropStage},
		{name: "source present", yaml: "- json: {expressions: {level: }}\n- drop:\n    source: [\"level\",\"msg\"]", line: `{"level":"x"}`, dropped: ReasonDropStage},
		{name: "source absent", yaml: "- json: {expressions: {level: }}\n- drop:\n    source: [\"level\",\"msg\"]", line: `{"other":"x"}`},
		{name: "value of a label", yaml: "- drop: {source: container_name, value: web}", line: "x", dropped: ReasonDropStage},
	})
}

func TestMatchStage(t *testing.T) {
	// The documentation's example.
	doc := `
- json:
    expressions:
      app:
- labels:
    app:
- match:
    selector: '{app="loki"}'
    stages:
    - json:
        expressions:
          msg: message
- match:
    pipeline_name: "app2"
    selector: '{app="pokey"}'
    action: keep
    stages:
    - json:
        expressions:
          msg: msg
- match:
    selector: '{app="promtail"} |~ ".*noisy error.*"'
    action: drop
    drop_counter_reason: promtail_noisy_error
- output:
    source: msg
`
	runCases(t, []stageCase{{
		name:   "doc line 1",
		yaml:   doc,
		line:   `{ "time":"2012-11-01T22:08:41+00:00", "app":"loki", "component": ["parser","type"], "level" : "WARN", "message" : "app1 log line" }`,
		out:    str("app1 log line"),
		labels: withBase(map[string]string{"app": "loki"}),
	}, {
		name:    "doc line 2",
		yaml:    doc,
		line:    `{ "time":"2012-11-01T22:08:41+00:00", "app":"promtail", "component": ["parser","type"], "level" : "ERROR", "message" : "foo noisy error" }`,
		dropped: "promtail_noisy_error",
	}, {
		name: "all matchers and filters",
		yaml: "- match:\n    selector: '{container_name=~\"w.*\", host!=\"h2\", source!~\"std(err)\", missing=\"\"} |= \"GET\" != \"/health\" |~ `\\d{3}` !~ \"5\\\\d\\\\d\"'\n    action: drop",
		line: "GET /api 200", dropped: ReasonMatchStage,
	}, {
		name: "filter excludes",
		yaml: "- match:\n    selector: '{container_name=\"web\"} != \"/health\"'\n    action: drop",
		line: "GET /health 200",
	}, {
		name: "regex matcher is anchored",
		yaml: "- match:\n    selector: '{container_name=~\"we\"}'\n    action: drop",
		line: "x",
	}, {
		name: "nested match sees labels set before",
		yaml: `
- static_labels: {team: a}
- match:
    selector: '{team="a"}'
    stages:
    - match:
        selector: '{source="stdout"}'
        stages:
        - tenant: {value: team-a}
`,
		line: "x", tenant: "team-a",
	}})
}

func TestTimestampStage(t *testing.T) {
	ts := func(s string) *time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			panic(err)
		}
		return &tm
	}
	stage := func(format string, more string) string {
		return "- regex: {expression: '^(?P<ts>[^|]*)'}\n- timestamp: {source: ts, format: '" + format + "'" + more + "}"
	}
	runCases(t, []stageCase{
		{name: "RFC3339Nano", yaml: stage("RFC3339Nano", ""), line: "2019-04-30T02:12:41.8443515Z|x", time: ts("2019-04-30T02:12:41.8443515Z")},
		{name: "RFC3339", yaml: stage("RFC3339", ""), line: "2020-08-11T11:00:00+02:00|x", time: ts("2020-08-11T09:00:00Z")},
		{name: "ANSIC", yaml: stage("ANSIC", ""), line: "Mon Jan  2 15:04:05 2006", time: ts("2006-01-02T15:04:05Z")},
		{name: "RFC1123Z", yaml: stage("RFC1123Z", ""), line: "Mon, 02 Jan 2006 15:04:05 -0700", time: ts("2006-01-02T22:04:05Z")},
		{name: "Unix", yaml: stage("Unix", ""), line: "1562708916", time: ts("2019-07-09T21:48:36Z")},
		{name: "Unix fraction", yaml: stage("Unix", ""), line: "1562708916.000000123", time: ts("2019-07-09T21:48:36.000000123Z")},
		{name: "UnixMs", yaml: stage("UnixMs", ""), line: "1562708916414", time: ts("2019-07-09T21:48:36.414Z")},
		{name: "UnixUs", yaml: stage("UnixUs", ""), line: "1562708916414123", time: ts("2019-07-09T21:48:36.414123Z")},
		{name: "UnixNs", yaml: stage("UnixNs", ""), line: "1562708916000000123", time: ts("2019-07-09T21:48:36.000000123Z")},
		{name: "Go layout with location", yaml: stage("2006-01-02 15:04:05", ", location: America/New_York"), line: "2020-07-01 08:00:00", time: ts("2020-07-01T12:00:00Z")},
		{name: "no year takes the current one", yaml: stage("Jan _2 15:04:05", ""), line: "Mar  4 05:06:07", time: ts("2020-03-04T05:06:07Z")},
		{name: "fallback", yaml: stage("RFC3339", ", fallback_formats: [UnixMs, '02/01/2006']"), line: "25/12/2021", time: ts("2021-12-25T00:00:00Z")},
		{name: "failure before any success keeps the time", yaml: stage("RFC3339", ""), line: "garbage", time: &t0},
		{name: "JSON number", yaml: "- json: {expressions: {ts: }}\n- timestamp: {source: ts, format: UnixMs}", line: `{"ts": 1562708916414}`, time: ts("2019-07-09T21:48:36.414Z")},
	})
}

func TestTimestampFudge(t *testing.T) {
	for _, c := range []struct {
		action string
		want   []int64 // offsets from the first parsed time
	}{
		{"fudge", []int64{0, 1, 2, 10, 11}},
		{"skip", []int64{0, -1, -1, 10, -1}},
	} {
		t.Run(c.action, func(t *testing.T) {
			p := mustParse(t, "- regex: {expression: '^(?P<ts>\\d+)'}\n- timestamp: {source: ts, format: UnixNs, action_on_failure: "+c.action+"}")
			lines := []string{"1000", "bad", "-", "1010", "nope"}
			for i, line := range lines {
				e := run(p, line)
				want := 1000 + c.want[i]
				if c.want[i] < 0 {
					want = t0.UnixNano()
				}
				if e.Time != want {
					t.Errorf("line %d %q: time %d, want %d", i, line, e.Time, want)
				}
			}
		})
	}
}

func TestOutputTemplateReplace(t *testing.T) {
	runCases(t, []stageCase{{
		name: "output",
		yaml: `
- json:
    expressions:
      user: user
      message: message
- labels:
    user:
- output:
    source: message
`,
		line:   `{"user": "alexis", "message": "hello, world!"}`,
		out:    str("hello, world!"),
		labels: withBase(map[string]string{"user": "alexis"}),
	}, {
		name:      "template new key",
		yaml:      "- template:\n    source: new_key\n    template: 'hello world!'",
		line:      "x",
		extracted: map[string]any{"new_key": "hello world!"},
	}, {
		name:      "template suffix and ToLower",
		yaml:      "- static_labels: {x: y}\n- regex: {expression: '(?P<app>\\w+)'}\n- template: {source: app, template: '{{ .Value }}_some_suffix'}\n- template: {source: app, template: '{{ ToLower .Value }}'}",
		line:      "LOKI",
		extracted: map[string]any{"app": "loki_some_suffix"},
	}, {
		name: "template with several keys",
		yaml: "- logfmt: {mapping: {level: , app: , module: }}\n" +
			"- template: {source: output_msg, template: '{{ .level }} for app {{ ToUpper .app }}'}\n" +
			"- template: {source: app, template: '{{ .level }} for app {{ ToUpper .Value }} in module {{.module}}'}",
		line:      "level=warn app=loki module=test",
		extracted: map[string]any{"output_msg": "warn for app LOKI", "app": "warn for app LOKI in module test"},
	}, {
		name:      "template Replace",
		yaml:      "- logfmt: {mapping: {app: }}\n- template: {source: app, template: '{{ Replace .Value \"loki\" \"blokey\" 1 }}'}",
		line:      "app=lokiloki",
		extracted: map[string]any{"app": "blokeyloki"},
	}, {
		name: "template Entry and output",
		yaml: "- logfmt: {mapping: {app: }}\n- template: {source: message, template: '{{.app }}: {{ .Entry }}'}\n- output: {source: message}",
		line: "app=api hello", out: str("api: app=api hello"),
	}, {
		name: "template functions",
		yaml: `
- logfmt: {mapping: {v: }}
- template: {source: trim, template: '{{ Trim .v ",. " }}|{{ TrimSpace "  a  " }}|{{ TrimPrefix .v "--" }}|{{ TrimSuffix "a.log" ".log" }}|{{ TrimLeft "xxa" "x" }}|{{ TrimRight "axx" "x" }}'}
- template: {source: re, template: '{{ regexReplaceAll "(a*)bc" "aabcxbc" "${1}X" }}|{{ regexReplaceAllLiteral "(ts=)" "ts=1" "timestamp=" }}|{{ regexMatch "^--" .v }}|{{ regexFind "[0-9]+" "ab12c" }}'}
- template: {source: sprig, template: '{{ .v | substr 2 5 }}|{{ trunc 3 "abcdef" }}|{{ default "d" .nothing }}|{{ add 1 "2" }}|{{ lower "AB" }}|{{ printf "%05d" 42 }}'}
`,
		line: "v=--x,y.",
		extracted: map[string]any{
			"trim":  "--x,y|a|x,y.|a|a|a",
			"re":    "aaXxX|timestamp=1|true|12",
			"sprig": "x,y|abc|d|3|ab|00042",
		},
	}, {
		name:      "Hash",
		yaml:      "- logfmt: {mapping: {ssn: }}\n- template: {source: h, template: '{{ .ssn | Hash \"salt\" }}'}\n- template: {source: h2, template: '{{ .ssn | Sha2Hash \"salt\" }}'}",
		line:      "ssn=123-45-6789",
		extracted: map[string]any{"h": sha3Hex("salt123-45-6789"), "h2": sha2Hex("salt123-45-6789")},
	}, {
		name: "replace password",
		yaml: "- replace:\n    expression: \"password (\\\\S+)\"\n    replace: \"****\"",
		line: "2019-01-01T01:00:00.000000001Z stderr P i'm a log message who has sensitive information with password xyz!",
		// \S+ takes the "!" too: the documentation's "****!" is a slip.
		out: str("2019-01-01T01:00:00.000000001Z stderr P i'm a log message who has sensitive information with password ****"),
	}, {
		name: "replace with source",
		yaml: `
- json:
    expressions:
     level:
     msg:
- replace:
    expression: "\\S+ - \"POST (\\S+) .*"
    source:     "msg"
    replace: "/loki/api/v1/push"
`,
		line:      `{"time":"2019-01-01T01:00:00.000000001Z", "level": "info", "msg":"11.11.11.11 - \"POST /loki/api/push/ HTTP/1.1\" 200 932"}`,
		extracted: map[string]any{"msg": `11.11.11.11 - "POST /loki/api/v1/push HTTP/1.1" 200 932`},
	}, {
		name: "replace with a template",
		yaml: "- replace:\n    expression: '\" (\\d{3}) '\n    replace: '{{ if eq .Value \"200\" }}{{ Replace .Value \"200\" \"HttpStatusOk\" -1 }}{{ else }}{{ .Value | ToUpper }}{{ end }}'",
		line: `11.11.11.11 - frank [25/Jan/2000:14:00:01 -0500] "GET /1986.js HTTP/1.1" 200 932 "-"`,
		out:  str(`11.11.11.11 - frank [25/Jan/2000:14:00:01 -0500] "GET /1986.js HTTP/1.1" HttpStatusOk 932 "-"`),
	}, {
		name: "replace named groups",
		yaml: "- replace:\n    expression: '^(?P<ip>\\S+) (?P<identd>\\S+) (?P<user>\\S+) \\[(?P<timestamp>[\\w:/]+\\s[+\\-]\\d{4})\\] \"(?P<action>\\S+)\\s?(?P<path>\\S+)?\\s?(?P<protocol>\\S+)?\" (?P<status>\\d{3}|-) (?P<size>\\d+|-)'\n    replace: '{{ .Value | ToUpper }}'",
		line: `11.11.11.11 - frank [25/Jan/2000:14:00:01 -0500] "GET /1986.js HTTP/1.1" 200 932 "-"`,
		out:  str(`11.11.11.11 - FRANK [25/JAN/2000:14:00:01 -0500] "GET /1986.JS HTTP/1.1" 200 932 "-"`),
		extracted: map[string]any{
			"ip": "11.11.11.11", "identd": "-", "user": "FRANK", "timestamp": "25/JAN/2000:14:00:01 -0500",
			"action": "GET", "path": "/1986.JS", "protocol": "HTTP/1.1", "status": "200", "size": "932",
		},
	}, {
		name: "replace empty",
		yaml: "- replace:\n    expression: \"11.11.11.11 - (\\\\S+\\\\s)\"\n    replace: \"\"",
		line: `11.11.11.11 - frank [25/Jan/2000:14:00:01 -0500] "GET /1986.js HTTP/1.1" 200`,
		out:  str(`11.11.11.11 - [25/Jan/2000:14:00:01 -0500] "GET /1986.js HTTP/1.1" 200`),
	}, {
		name: "replace label value (labeldrop doc)",
		yaml: "- replace:\n    expression: \"(.*)\"\n    replace: \"pod_name:{{ .container_name }} {{ .Value }}\"\n- labeldrop:\n    - container_name",
		line: "log message", out: str("pod_name:web log message"),
		labels: map[string]string{"host": "h1", "source": "stdout"},
	}, {
		name: "replace without groups replaces matches",
		yaml: "- replace: {expression: '\\d', replace: '#'}",
		line: "a1b22", out: str("a#b##"),
	}})
}

func TestDecolorizeTenantStages(t *testing.T) {
	runCases(t, []stageCase{{
		name: "decolorize",
		yaml: "- decolorize:",
		line: "[2022-11-04 22:17:57.811] \033[0;32mhttp\033[0m: GET /_health (0 ms) 204",
		out:  str("[2022-11-04 22:17:57.811] http: GET /_health (0 ms) 204"),
	}, {
		name: "decolorize cursor moves",
		yaml: "- decolorize: {}",
		line: "\x1b[2K\x1b[1Gdone\x1b", out: str("done"),
	}, {
		name: "tenant from extracted",
		yaml: "- json:\n    expressions:\n      customer_id: customer_id\n- tenant:\n    source: customer_id",
		line: `{"customer_id":"1","log":"log message\n","stream":"stderr","time":"2019-04-30T02:12:41.8443515Z"}`, tenant: "1",
	}, {
		name: "tenant value in match",
		yaml: `
- json:
    expressions:
      app:
      message:
- labels:
    app:
- match:
    selector: '{app="api"}'
    stages:
      - tenant:
          value: "team-api"
- output:
    source: message
`,
		line: `{"app":"api","message":"log message"}`, tenant: "team-api", out: str("log message"),
	}, {
		name: "tenant from label",
		yaml: "- match:\n    selector: '{host=~\".+\"}'\n    stages:\n      - tenant:\n          label: \"host\"",
		line: "x", tenant: "h1",
	}, {
		name: "invalid tenant ignored",
		yaml: "- logfmt: {mapping: {t: }}\n- tenant: {source: t}",
		line: "t=a/b",
	}})
}

func TestLimitStage(t *testing.T) {
	p := mustParse(t, "- limit:\n    rate: 10\n    burst: 10\n    drop: true")
	now := t0
	p.now = func() time.Time { return now }
	kept := 0
	for range 15 {
		if !run(p, "x").Dropped {
			kept++
		}
	}
	if kept != 10 {
		t.Errorf("burst: kept %d of 15, want 10", kept)
	}
	now = now.Add(500 * time.Millisecond) // 5 tokens
	kept = 0
	for range 10 {
		e := run(p, "x")
		if !e.Dropped {
			kept++
		} else if e.DropReason != ReasonLimitStage {
			t.Errorf("reason %q", e.DropReason)
		}
	}
	if kept != 5 {
		t.Errorf("after 0.5s: kept %d, want 5", kept)
	}
	// Another instance has its own bucket.
	if run(p.Instance(nil), "x").Dropped {
		t.Error("a new instance shares the bucket")
	}
}

func TestLimitByLabel(t *testing.T) {
	p := mustParse(t, `
- logfmt: {mapping: {ns: }}
- labels: {ns: }
- limit:
    rate: 1
    burst: 2
    drop: true
    by_label_name: ns
    max_distinct_labels: 2
`)
	count := func(line string, n int) int {
		kept := 0
		for range n {
			if !run(p, line).Dropped {
				kept++
			}
		}
		return kept
	}
	if k := count("ns=a", 5); k != 2 {
		t.Errorf("ns=a kept %d, want 2", k)
	}
	if k := count("ns=b", 5); k != 2 {
		t.Errorf("ns=b kept %d, want 2 (own bucket)", k)
	}
	if k := count("no label", 5); k != 5 {
		t.Errorf("without the label kept %d, want all 5", k)
	}
	// c evicts a (least recently used); a starts over with a full bucket.
	count("ns=c", 1)
	if k := count("ns=a", 5); k != 2 {
		t.Errorf("ns=a after eviction kept %d, want 2", k)
	}
}

// TestLineRegexpPrefixes checks the literals the prefilter scans for: each
// is one scan of the line, so a literal is not split by a class that
// follows it, and the matches stay regexp's.
func TestLineRegexpPrefixes(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`(level|lvl|severity)=(?P<level>\w+)`, []string{"level=", "lvl=", "severity="}},
		{`seq=(?P<seq>\d+) stream=(?P<stream>\w+)`, []string{"seq="}},
		{`[ab]x(?P<n>\d)`, []string{"ax", "bx"}},
		{`^seq=(\d+)`, nil},
		{`\d+ms`, []string{"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"}},
	} {
		lr := newLineRegexp(regexp.MustCompile(tc.expr))
		if !slices.Equal(lr.prefixes, tc.want) {
			t.Errorf("%s: prefixes %q, want %q", tc.expr, lr.prefixes, tc.want)
		}
		for _, line := range []string{
			"loggen id=sidecarbench seq=12 stream=stdout len=250 text=ascii seq=7 x",
			"ts=1 lvl=warn level=error", "bx7 ax1", "seq=x seq=", "",
		} {
			if got, want := lr.FindStringSubmatchIndex(line), lr.re.FindStringSubmatchIndex(line); !slices.Equal(got, want) {
				t.Errorf("%s on %q: %v, want regexp's %v", tc.expr, line, got, want)
			}
		}
	}
}
