package dockerlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// stdlibLine is what encoding/json makes of a json-file line, when it can be
// compared with our decoder: an object without duplicate top-level names,
// with string log, stream and time, and attrs absent, null or all strings.
type stdlibLine struct {
	log, stream, time string
	attrs             map[string]string
}

func decodeStdlib(line []byte) (stdlibLine, bool) {
	var m map[string]any
	if json.Unmarshal(line, &m) != nil || hasDuplicateNames(line) {
		return stdlibLine{}, false
	}
	var l stdlibLine
	var ok1, ok2, ok3 bool
	l.log, ok1 = m["log"].(string)
	l.stream, ok2 = m["stream"].(string)
	l.time, ok3 = m["time"].(string)
	if !ok1 || !ok2 || !ok3 {
		return stdlibLine{}, false
	}
	switch a := m["attrs"].(type) {
	case nil:
	case map[string]any:
		l.attrs = map[string]string{}
		for k, v := range a {
			s, ok := v.(string)
			if !ok {
				return stdlibLine{}, false
			}
			l.attrs[k] = s
		}
	default:
		return stdlibLine{}, false
	}
	return l, true
}

// hasDuplicateNames reports a top-level name that appears twice: our decoder
// rejects {"log":1,"log":"x"} where encoding/json keeps the last value.
func hasDuplicateNames(line []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(line))
	if _, err := dec.Token(); err != nil {
		return true
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return true
		}
		name, _ := tok.(string)
		if seen[name] {
			return true
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return true
		}
	}
	return false
}

// compareWithStdlib checks our result against encoding/json's when the input
// is comparable; it returns whether it was.
func compareWithStdlib(t *testing.T, line []byte, got *JSONLine, err error) bool {
	t.Helper()
	want, ok := decodeStdlib(line)
	if !ok {
		return false
	}
	wantTime, terr := time.Parse(time.RFC3339Nano, want.time)
	if terr != nil || wantTime.Before(minTime) || wantTime.After(maxTime) {
		if err == nil {
			t.Errorf("Decode(%q) accepted time %q that time.Parse rejects or int64 cannot hold", line, want.time)
		}
		return true
	}
	if err != nil {
		t.Errorf("Decode(%q) error %v; encoding/json accepts it", line, err)
		return true
	}
	if string(got.Log) != want.log {
		t.Errorf("Decode(%q) log = %q, encoding/json %q", line, got.Log, want.log)
	}
	if got.Stream != want.stream {
		t.Errorf("Decode(%q) stream = %q, encoding/json %q", line, got.Stream, want.stream)
	}
	if got.TimeNano != wantTime.UnixNano() {
		t.Errorf("Decode(%q) time = %d, time.Parse %d", line, got.TimeNano, wantTime.UnixNano())
	}
	var gotAttrs map[string]string
	if want.attrs != nil {
		gotAttrs = map[string]string{}
		for _, a := range got.Attrs {
			gotAttrs[string(a.Key)] = string(a.Value) // last wins, as in a map
		}
	}
	if !maps.Equal(gotAttrs, want.attrs) {
		t.Errorf("Decode(%q) attrs = %v, encoding/json %v", line, gotAttrs, want.attrs)
	}
	return true
}

const jsonTimeField = `"time":"2024-05-01T12:34:56.123456789Z"`

func TestJSONDecoderDecode(t *testing.T) {
	const wantTime = 1714566896123456789
	tests := []struct {
		name        string
		in          string
		wantErr     bool
		log         string // checked when the decode succeeds
		stream      string
		attrs       []string // key, value, key, value...
		invalidUTF8 bool
		// lenient marks input that encoding/json rejects and we accept on
		// purpose (documented on JSONDecoder).
		lenient bool
	}{
		{name: "typical", in: `{"log":"hello world\n","stream":"stdout",` + jsonTimeField + "}\n", log: "hello world\n", stream: "stdout"},
		{name: "no trailing newline in file", in: `{"log":"hello\n","stream":"stderr",` + jsonTimeField + `}`, log: "hello\n", stream: "stderr"},
		{name: "chunk without newline", in: `{"log":"part of a long line","stream":"stdout",` + jsonTimeField + "}\n", log: "part of a long line", stream: "stdout"},
		{name: "fields reordered", in: `{` + jsonTimeField + `,"stream":"stderr","log":"x\n"}`, log: "x\n", stream: "stderr"},
		{name: "whitespace everywhere", in: " \t{ \"log\" :\t\"x\" , \"stream\" : \"stdout\" ,\r\n " + jsonTimeField + " }\r\n", log: "x", stream: "stdout"},
		{name: "attrs", in: `{"log":"x\n","stream":"stdout","attrs":{"tag":"web/abc","com.example.team":"pay\u00e9"},` + jsonTimeField + `}`, log: "x\n", stream: "stdout", attrs: []string{"tag", "web/abc", "com.example.team", "payé"}},
		{name: "empty attrs", in: `{"log":"x\n","stream":"stdout","attrs":{},` + jsonTimeField + `}`, log: "x\n", stream: "stdout"},
		{name: "null attrs", in: `{"log":"x\n","stream":"stdout","attrs":null,` + jsonTimeField + `}`, log: "x\n", stream: "stdout"},
		{name: "simple escapes", in: `{"log":"q\" b\\ s\/ \b\f\n\r\t end","stream":"stdout",` + jsonTimeField + `}`, log: "q\" b\\ s/ \b\f\n\r\t end", stream: "stdout"},
		{name: "html escapes as docker writes them", in: `{"log":"\u003chtml\u003e \u0026amp;\n","stream":"stdout",` + jsonTimeField + `}`, log: "<html> &amp;\n", stream: "stdout"},
		{name: "unicode escapes", in: `{"log":"\u00e9\u00E9\u2028\u0000\u001b[31m","stream":"stdout",` + jsonTimeField + `}`, log: "éé\u2028\x00\x1b[31m", stream: "stdout"},
		{name: "surrogate pair", in: `{"log":"\ud83d\ude00!","stream":"stdout",` + jsonTimeField + `}`, log: "😀!", stream: "stdout"},
		{name: "lone high surrogate", in: `{"log":"a\ud800b","stream":"stdout",` + jsonTimeField + `}`, log: "a\uFFFDb", stream: "stdout", invalidUTF8: true},
		{name: "lone high surrogate at end", in: `{"log":"a\ud800","stream":"stdout",` + jsonTimeField + `}`, log: "a\uFFFD", stream: "stdout", invalidUTF8: true},
		{name: "lone low surrogate", in: `{"log":"\udc00x","stream":"stdout",` + jsonTimeField + `}`, log: "\uFFFDx", stream: "stdout", invalidUTF8: true},
		{name: "two high surrogates", in: `{"log":"\ud800\ud83d\ude00","stream":"stdout",` + jsonTimeField + `}`, log: "\uFFFD😀", stream: "stdout", invalidUTF8: true},
		{name: "high surrogate then BMP escape", in: `{"log":"\ud800\u0041","stream":"stdout",` + jsonTimeField + `}`, log: "\uFFFDA", stream: "stdout", invalidUTF8: true},
		{name: "reversed pair", in: `{"log":"\ude00\ud83d","stream":"stdout",` + jsonTimeField + `}`, log: "\uFFFD\uFFFD", stream: "stdout", invalidUTF8: true},
		{name: "raw non-ASCII", in: `{"log":"grüße 日本語 😀 – ok\n","stream":"stdout",` + jsonTimeField + `}`, log: "grüße 日本語 😀 – ok\n", stream: "stdout"},
		{name: "invalid byte", in: "{\"log\":\"a\xffb\",\"stream\":\"stdout\"," + jsonTimeField + "}", log: "a\uFFFDb", stream: "stdout", invalidUTF8: true},
		{name: "truncated rune", in: "{\"log\":\"a\xe2\x82\",\"stream\":\"stdout\"," + jsonTimeField + "}", log: "a\uFFFD\uFFFD", stream: "stdout", invalidUTF8: true},
		{name: "overlong encoding", in: "{\"log\":\"\xc0\xaf\",\"stream\":\"stdout\"," + jsonTimeField + "}", log: "\uFFFD\uFFFD", stream: "stdout", invalidUTF8: true},
		{name: "utf8 encoded surrogate", in: "{\"log\":\"\xed\xa0\x80\",\"stream\":\"stdout\"," + jsonTimeField + "}", log: "\uFFFD\uFFFD\uFFFD", stream: "stdout", invalidUTF8: true},
		{name: "invalid byte in attrs", in: "{\"log\":\"x\",\"stream\":\"stdout\",\"attrs\":{\"k\":\"v\xff\"}," + jsonTimeField + "}", log: "x", stream: "stdout", attrs: []string{"k", "v\uFFFD"}, invalidUTF8: true},
		{name: "invalid byte in unknown field", in: "{\"log\":\"x\",\"stream\":\"stdout\",\"other\":\"\xff\"," + jsonTimeField + "}", log: "x", stream: "stdout"},
		{name: "escaped field name", in: `{"l\u006fg":"x","stream":"stdout",` + jsonTimeField + `}`, log: "x", stream: "stdout"},
		{name: "escaped stream and time", in: `{"log":"x","stream":"std\u006fut","time":"2024-05-01T12:34:56.123456789\u005a"}`, log: "x", stream: "stdout"},
		{name: "odd stream", in: `{"log":"x","stream":"stdin",` + jsonTimeField + `}`, log: "x", stream: "stdin"},
		{name: "empty stream", in: `{"log":"x","stream":"",` + jsonTimeField + `}`, log: "x", stream: ""},
		{name: "no stream", in: `{"log":"x",` + jsonTimeField + `}`, log: "x"},
		{name: "empty log", in: `{"log":"","stream":"stdout",` + jsonTimeField + `}`, log: "", stream: "stdout"},
		{name: "duplicate log", in: `{"log":"first","stream":"stdout","log":"second",` + jsonTimeField + `}`, log: "second", stream: "stdout"},
		{name: "duplicate log forgets invalid UTF-8", in: "{\"log\":\"\xff\",\"stream\":\"stdout\",\"log\":\"ok\"," + jsonTimeField + "}", log: "ok", stream: "stdout"},
		{name: "unknown fields", in: `{"a":1,"b":-0.5e+10,"c":[1,"x\"]",{"d":[[]],"e":{}}],"log":"x","f":true,"g":false,"h":null,"i":"\u1234\n","stream":"stdout",` + jsonTimeField + `,"z":{"y":[0,1E3,-2]}}`, log: "x", stream: "stdout"},
		{name: "attrs with escapes", in: `{"log":"x","stream":"stdout","attrs":{"a\"b":"c\nd","\u00e9":""},` + jsonTimeField + `}`, log: "x", stream: "stdout", attrs: []string{"a\"b", "c\nd", "é", ""}},
		{name: "fractionless time", in: `{"log":"x","stream":"stdout","time":"2024-05-01T12:34:56Z"}`, log: "x", stream: "stdout"},
		{name: "offset time", in: `{"log":"x","stream":"stdout","time":"2024-05-01T14:34:56.1+02:00"}`, log: "x", stream: "stdout"},
		{name: "raw control characters", in: "{\"log\":\"a\tb\x01\",\"stream\":\"stdout\"," + jsonTimeField + "}", log: "a\tb\x01", stream: "stdout", lenient: true},

		{name: "empty", in: "", wantErr: true},
		{name: "blank", in: " \n", wantErr: true},
		{name: "empty object", in: "{}", wantErr: true},
		{name: "array", in: `["log"]`, wantErr: true},
		{name: "missing log", in: `{"stream":"stdout",` + jsonTimeField + `}`, wantErr: true},
		{name: "missing time", in: `{"log":"x","stream":"stdout"}`, wantErr: true},
		{name: "log not a string", in: `{"log":5,"stream":"stdout",` + jsonTimeField + `}`, wantErr: true},
		{name: "log null", in: `{"log":null,"stream":"stdout",` + jsonTimeField + `}`, wantErr: true},
		{name: "stream not a string", in: `{"log":"x","stream":1,` + jsonTimeField + `}`, wantErr: true},
		{name: "time not a string", in: `{"log":"x","stream":"stdout","time":1714566896}`, wantErr: true},
		{name: "bad time", in: `{"log":"x","stream":"stdout","time":"yesterday"}`, wantErr: true},
		{name: "time out of range", in: `{"log":"x","stream":"stdout","time":"0001-01-01T00:00:00Z"}`, wantErr: true},
		{name: "attrs not an object", in: `{"log":"x","stream":"stdout","attrs":["a"],` + jsonTimeField + `}`, wantErr: true},
		{name: "attrs value not a string", in: `{"log":"x","stream":"stdout","attrs":{"a":1},` + jsonTimeField + `}`, wantErr: true},
		{name: "truncated", in: `{"log":"x","stream":"stdout","ti`, wantErr: true},
		{name: "truncated in escape", in: `{"log":"x\`, wantErr: true},
		{name: "truncated in unicode escape", in: `{"log":"x\u12`, wantErr: true},
		{name: "unterminated object", in: `{"log":"x",` + jsonTimeField, wantErr: true},
		{name: "trailing garbage", in: `{"log":"x",` + jsonTimeField + `}x`, wantErr: true},
		{name: "two objects", in: `{"log":"x",` + jsonTimeField + `}{"log":"y",` + jsonTimeField + `}`, wantErr: true},
		{name: "bad escape", in: `{"log":"\x41",` + jsonTimeField + `}`, wantErr: true},
		{name: "bad unicode escape", in: `{"log":"\u12G4",` + jsonTimeField + `}`, wantErr: true},
		{name: "bad escape after high surrogate", in: `{"log":"\ud800\u12G4",` + jsonTimeField + `}`, wantErr: true},
		{name: "missing colon", in: `{"log" "x",` + jsonTimeField + `}`, wantErr: true},
		{name: "missing comma", in: `{"log":"x" ` + jsonTimeField + `}`, wantErr: true},
		{name: "trailing comma", in: `{"log":"x",` + jsonTimeField + `,}`, wantErr: true},
		{name: "unquoted name", in: `{log:"x",` + jsonTimeField + `}`, wantErr: true},
		{name: "single quotes", in: `{'log':'x',` + jsonTimeField + `}`, wantErr: true},
		{name: "leading zero in unknown", in: `{"log":"x","n":01,` + jsonTimeField + `}`, wantErr: true},
		{name: "bare minus in unknown", in: `{"log":"x","n":-,` + jsonTimeField + `}`, wantErr: true},
		{name: "dot number in unknown", in: `{"log":"x","n":.5,` + jsonTimeField + `}`, wantErr: true},
		{name: "no fraction digits in unknown", in: `{"log":"x","n":1.,` + jsonTimeField + `}`, wantErr: true},
		{name: "no exponent digits in unknown", in: `{"log":"x","n":1e+,` + jsonTimeField + `}`, wantErr: true},
		{name: "bad literal in unknown", in: `{"log":"x","n":tru,` + jsonTimeField + `}`, wantErr: true},
		{name: "mismatched brackets in unknown", in: `{"log":"x","n":[1},` + jsonTimeField + `}`, wantErr: true},
		{name: "unclosed array in unknown", in: `{"log":"x","n":[1,` + jsonTimeField + `}`, wantErr: true},
		{name: "object without name in unknown", in: `{"log":"x","n":{1:2},` + jsonTimeField + `}`, wantErr: true},
		{name: "trailing comma in unknown", in: `{"log":"x","n":[1,],` + jsonTimeField + `}`, wantErr: true},
		{name: "byte order mark", in: "\xef\xbb\xbf{\"log\":\"x\"," + jsonTimeField + "}", wantErr: true},
		{name: "too deep", in: `{"log":"x","n":` + strings.Repeat("[", maxNesting) + strings.Repeat("]", maxNesting) + `,` + jsonTimeField + `}`, wantErr: true},
		{name: "deep but allowed", in: `{"log":"x","stream":"stdout","n":` + strings.Repeat("[", maxNesting-1) + strings.Repeat("]", maxNesting-1) + `,` + jsonTimeField + `}`, log: "x", stream: "stdout"},
	}
	var d JSONDecoder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got JSONLine
			err := d.Decode([]byte(tt.in), &got)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %+v, want an error", got)
				}
				if !errors.Is(err, ErrCorruptLine) {
					t.Fatalf("error %v does not wrap ErrCorruptLine", err)
				}
			} else {
				if err != nil {
					t.Fatalf("unexpected error %v", err)
				}
				if string(got.Log) != tt.log || got.Stream != tt.stream || got.TimeNano != wantTime && strings.Contains(tt.in, jsonTimeField) || got.InvalidUTF8 != tt.invalidUTF8 {
					t.Errorf("got log %q stream %q time %d invalidUTF8 %v; want %q %q %d %v",
						got.Log, got.Stream, got.TimeNano, got.InvalidUTF8, tt.log, tt.stream, int64(wantTime), tt.invalidUTF8)
				}
				var attrs []string
				for _, a := range got.Attrs {
					attrs = append(attrs, string(a.Key), string(a.Value))
				}
				if fmt.Sprint(attrs) != fmt.Sprint(tt.attrs) {
					t.Errorf("attrs = %q, want %q", attrs, tt.attrs)
				}
			}
			compared := compareWithStdlib(t, []byte(tt.in), &got, err)
			var m map[string]any
			stdlibOK := json.Unmarshal([]byte(tt.in), &m) == nil
			if tt.lenient && stdlibOK {
				t.Errorf("marked lenient but encoding/json accepts it")
			}
			if !tt.wantErr && !tt.lenient && !compared && strings.Contains(tt.in, `"stream"`) && !hasDuplicateNames([]byte(tt.in)) {
				t.Errorf("not compared with encoding/json, mark it lenient or fix the case")
			}
		})
	}
}

// TestJSONDecoderStdlibStruct decodes the benchmark lines both ways, the
// way a user of encoding/json would (into a struct).
func TestJSONDecoderStdlibStruct(t *testing.T) {
	var d JSONDecoder
	for _, line := range benchLines(t) {
		var got JSONLine
		if err := d.Decode(line, &got); err != nil {
			t.Fatalf("Decode(%q): %v", line, err)
		}
		var want stdlibStruct
		if err := json.Unmarshal(line, &want); err != nil {
			t.Fatal(err)
		}
		if string(got.Log) != want.Log || got.Stream != want.Stream || got.TimeNano != want.Time.UnixNano() || len(got.Attrs) != len(want.Attrs) {
			t.Fatalf("Decode(%q) = %q %q %d %d attrs; encoding/json %+v", line, got.Log, got.Stream, got.TimeNano, len(got.Attrs), want)
		}
		for _, a := range got.Attrs {
			if want.Attrs[string(a.Key)] != string(a.Value) {
				t.Fatalf("attr %q = %q, encoding/json %q", a.Key, a.Value, want.Attrs[string(a.Key)])
			}
		}
	}
}

// TestJSONDecoderReuse checks that a decode does not leak state into the next.
func TestJSONDecoderReuse(t *testing.T) {
	var d JSONDecoder
	var got JSONLine
	if err := d.Decode([]byte("{\"log\":\"\xff\",\"stream\":\"odd\",\"attrs\":{\"a\":\"b\"},"+jsonTimeField+"}"), &got); err != nil {
		t.Fatal(err)
	}
	if !got.InvalidUTF8 || len(got.Attrs) != 1 || got.Stream != "odd" {
		t.Fatalf("first decode: %+v", got)
	}
	if err := d.Decode([]byte(`{"log":"ok",`+jsonTimeField+`}`), &got); err != nil {
		t.Fatal(err)
	}
	if got.InvalidUTF8 || got.Attrs != nil || got.Stream != "" || string(got.Log) != "ok" {
		t.Fatalf("second decode kept state: %+v", got)
	}
	if err := d.Decode([]byte(`{"stream":"stderr",`+jsonTimeField+`,"log":"x"`), &got); err == nil {
		t.Fatal("want an error")
	}
	if got.Log != nil || got.TimeNano != 0 || got.Stream != "" {
		t.Fatalf("failed decode left a result: %+v", got)
	}
}

func TestJSONLineEndsLine(t *testing.T) {
	tests := []struct {
		log  string
		ends bool
		text string
	}{
		{"whole\n", true, "whole"},
		{"tty\r\n", true, "tty\r"},
		{"\n", true, ""},
		{"chunk", false, "chunk"},
		{"", false, ""},
	}
	for _, tt := range tests {
		l := JSONLine{Log: []byte(tt.log)}
		if l.EndsLine() != tt.ends || string(l.Text()) != tt.text {
			t.Errorf("%q: EndsLine %v Text %q; want %v %q", tt.log, l.EndsLine(), l.Text(), tt.ends, tt.text)
		}
	}
}

func TestJSONDecoderAllocs(t *testing.T) {
	var d JSONDecoder
	var out JSONLine
	lines := benchLines(t)
	for _, l := range lines { // grow the buffers
		if err := d.Decode(l, &out); err != nil {
			t.Fatal(err)
		}
	}
	odd := []byte(`{"log":"x","stream":"journal",` + jsonTimeField + `}`)
	_ = d.Decode(odd, &out)
	allocs := testing.AllocsPerRun(20, func() {
		for _, l := range lines {
			_ = d.Decode(l, &out)
		}
		_ = d.Decode(odd, &out)
	})
	if allocs != 0 {
		t.Fatalf("%v allocs per pass, want 0", allocs)
	}
}

func FuzzJSONFileDecode(f *testing.F) {
	for _, l := range benchLines(f) {
		f.Add(l)
	}
	for _, s := range []string{
		`{"log":"\ud83d\ude00\ud800\u0041\n","stream":"stderr","attrs":{"k":"v"},` + jsonTimeField + `}`,
		"{\"log\":\"\xff\xe2\x82\",\"stream\":\"stdout\",\"x\":[{\"y\":null}]," + jsonTimeField + "}",
		`{"time":"2024-05-01T14:34:56.1+02:00","log":"","stream":"stdout"}`,
		`{"log":"x","stream":"stdout","n":-0.5E-3,` + jsonTimeField + `}`,
	} {
		f.Add([]byte(s))
	}
	var d JSONDecoder
	f.Fuzz(func(t *testing.T, line []byte) {
		var got JSONLine
		err := d.Decode(line, &got)
		if err != nil {
			if !errors.Is(err, ErrCorruptLine) {
				t.Fatalf("error %v does not wrap ErrCorruptLine", err)
			}
		} else {
			if !utf8.Valid(got.Log) {
				t.Fatalf("Log %q is not valid UTF-8", got.Log)
			}
			if got.InvalidUTF8 && utf8.Valid(line) && !bytes.Contains(bytes.ToLower(line), []byte(`\ud`)) {
				t.Fatalf("InvalidUTF8 set for valid input %q", line)
			}
		}
		compareWithStdlib(t, line, &got, err)
	})
}

// stdlibStruct is how a program using encoding/json would read the lines.
type stdlibStruct struct {
	Log    string            `json:"log"`
	Stream string            `json:"stream"`
	Time   time.Time         `json:"time"`
	Attrs  map[string]string `json:"attrs"`
}

// benchLines returns json-file lines shaped like real traffic: mostly ~250 B
// plain application lines, some JSON-in-JSON (many \" escapes), some
// non-ASCII, some with attrs. encoding/json writes them as dockerd does,
// including \u003c-style escapes for <, > and &.
func benchLines(tb testing.TB) [][]byte {
	tb.Helper()
	type entry struct {
		Log    string            `json:"log"`
		Stream string            `json:"stream"`
		Attrs  map[string]string `json:"attrs,omitempty"`
		Time   string            `json:"time"`
	}
	base := time.Date(2024, 5, 1, 12, 34, 56, 0, time.UTC)
	var lines [][]byte
	for i := range 64 {
		when := base.Add(time.Duration(i) * 1234567891 * time.Nanosecond)
		at := when.Format(time.RFC3339Nano)
		app := when.Format("2006-01-02 15:04:05.000") // the application's own stamp
		e := entry{Stream: SourceStdout, Time: at}
		switch {
		case i%8 == 3:
			e.Log = fmt.Sprintf(`{"level":"info","ts":"%s","caller":"orders/handler.go:%d","msg":"request done","method":"GET","path":"/api/v1/orders/%d","status":200,"duration_ms":%d.%d}`+"\n", at, 100+i, 4000+i*17, i, i*7%10)
		case i%8 == 5:
			e.Stream = SourceStderr
			e.Log = fmt.Sprintf("%s WARN  Benutzer „Müller“ hat Bestellung %d storniert – Grund: zu teuer (注文はキャンセルされました) ✔ retry=%d\n", app, 7000+i, i%3)
		case i%8 == 6:
			e.Attrs = map[string]string{"tag": "orders/4f2a9c1e7b3d", "com.example.team": "payments"}
			e.Log = fmt.Sprintf("%s INFO  [pool-3-thread-%d] c.e.p.SettlementJob - settled batch=%d items=%d amount=%d.%02d EUR <ok> & done\n", app, i%8, 900+i, i*3, i*1000+7, i%100)
		default:
			e.Log = fmt.Sprintf("%s INFO  [http-nio-8080-exec-%d] c.e.s.OrderController - GET /api/v1/orders/%d?expand=items status=200 duration=%d.%dms user=alice%d@example.com trace_id=4bf92f3577b34da6a3ce929d0e0e%04d\n", app, i%16, 10000+i*31, i, i%10, i, i)
		}
		b, err := json.Marshal(e)
		if err != nil {
			tb.Fatal(err)
		}
		lines = append(lines, append(b, '\n'))
	}
	return lines
}

func benchTotal(lines [][]byte) int64 {
	var n int64
	for _, l := range lines {
		n += int64(len(l))
	}
	return n
}

func BenchmarkJSONFileDecode(b *testing.B) {
	lines := benchLines(b)
	b.SetBytes(benchTotal(lines) / int64(len(lines)))
	b.ReportAllocs()
	var d JSONDecoder
	var out JSONLine
	i := 0
	for b.Loop() {
		if err := d.Decode(lines[i%len(lines)], &out); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkJSONFileDecodeStdlib(b *testing.B) {
	lines := benchLines(b)
	b.SetBytes(benchTotal(lines) / int64(len(lines)))
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		var out stdlibStruct
		if err := json.Unmarshal(lines[i%len(lines)], &out); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
