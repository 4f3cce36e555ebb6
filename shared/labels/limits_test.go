package labels

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/logferry/logferry/shared/metadata"
)

// allocatedBytes returns how many bytes f allocates, on average over runs.
func allocatedBytes(runs int, f func()) uint64 {
	f() // warm up: lazily built state is not what is measured
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

// TestValidateRefusesWhatIsOverABound checks that every template and size
// from outside (log-opts, and the sidecar's logferry.* container labels,
// which image authors write) is bounded at validation, with an error that
// names the option, wraps ErrInvalidOption (and ErrLimit for a bound), and
// is found without allocating in proportion to the size asked for.
func TestValidateRefusesWhatIsOverABound(t *testing.T) {
	nest := func(fn, arg string, depth int) string {
		return strings.Repeat("("+fn+" ", depth) + arg + strings.Repeat(")", depth)
	}
	many := func(n int, format string) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf(format, i))
		}
		return strings.Join(parts, ",")
	}
	tests := []struct {
		name    string
		cfg     Config
		wantKey string
		noLimit bool // refused, but as unsupported rather than over a bound
	}{
		// The incident: 1.2 GiB allocated during validation.
		{name: "pad of 300 MB", cfg: Config{ExternalLabels: "x={{pad .Name 300000000 0}}"}, wantKey: OptExternalLabels},
		{name: "pad of 1 GB", cfg: Config{ExternalLabels: "x={{pad .Name 1000000000 0}}"}, wantKey: OptExternalLabels},
		{name: "pad suffix", cfg: Config{ExternalLabels: "x={{pad .Name 0 1000000000}}"}, wantKey: OptExternalLabels},
		{name: "pad counts together past a value", cfg: Config{ExternalLabels: "x={{pad .Name 1024 1025}}"}, wantKey: OptExternalLabels},
		{name: "pad of the largest int", cfg: Config{ExternalLabels: "x={{pad .Name 9223372036854775807 9223372036854775807}}"}, wantKey: OptExternalLabels},
		{name: "pad in a branch the sample does not take", cfg: Config{ExternalLabels: `x={{if eq .Name "web"}}{{pad .Name 1000000000 0}}{{end}}`}, wantKey: OptExternalLabels},
		{name: "pad count from a variable", cfg: Config{ExternalLabels: "x={{$n := 1000000000}}{{pad .Name $n 0}}"}, wantKey: OptExternalLabels},
		{name: "pad of an empty value", cfg: Config{ExternalLabels: "x={{pad .ContainerLabels.nope 1000000000 0}}"}, wantKey: OptExternalLabels},
		{name: "truncate count past a value", cfg: Config{ExternalLabels: "x={{truncate .Name 1000000000}}"}, wantKey: OptExternalLabels},
		{name: "printf width", cfg: Config{ExternalLabels: `x={{printf "%999999d" 1}}`}, wantKey: OptExternalLabels},
		{name: "printf widths together", cfg: Config{ExternalLabels: `x={{printf "%1500d%1500d" 1 2}}`}, wantKey: OptExternalLabels},
		{name: "printf star width", cfg: Config{ExternalLabels: `x={{printf "%*d" 1000000 1}}`}, wantKey: OptExternalLabels},
		{name: "printf format from a variable", cfg: Config{ExternalLabels: `x={{$f := "%999999d"}}{{printf $f 1}}`}, wantKey: OptExternalLabels},
		{name: "output past a value", cfg: Config{ExternalLabels: "x=" + strings.Repeat("{{.FullID}}", 33)}, wantKey: OptExternalLabels},
		{name: "escaping that doubles", cfg: Config{ExternalLabels: "x={{" + nest("js", `"\\\\\\\\"`, 12) + "}}"}, wantKey: OptExternalLabels},
		{name: "json that doubles", cfg: Config{ExternalLabels: "x={{" + nest("json", ".Name", 12) + "}}"}, wantKey: OptExternalLabels},
		{name: "pad that grows in a chain", cfg: Config{ExternalLabels: "x={{pad (pad (pad .FullID 1000 1000) 1000 1000) 1000 1000}}"}, wantKey: OptExternalLabels},
		{name: "template text past a value", cfg: Config{ExternalLabels: "x={{.Name}}" + strings.Repeat("y", MaxLabelValueBytes)}, wantKey: OptExternalLabels},
		{name: "literal past a value", cfg: Config{ExternalLabels: "x=" + strings.Repeat("y", MaxLabelValueBytes+1)}, wantKey: OptExternalLabels},
		{name: "label name past Loki's", cfg: Config{ExternalLabels: strings.Repeat("n", MaxLabelNameBytes+1) + "=x"}, wantKey: OptExternalLabels},
		{name: "option past its bound", cfg: Config{ExternalLabels: "x=" + strings.Repeat("y", 1<<20)}, wantKey: OptExternalLabels},
		{name: "more external labels than a stream takes", cfg: Config{ExternalLabels: many(MaxLabelsPerStream+1, "l%d=x")}, wantKey: OptExternalLabels},
		{name: "external labels with source, host, container_name", cfg: Config{ExternalLabels: many(MaxLabelsPerStream-2, "l%d=x")}, wantKey: OptExternalLabels},
		{name: "labels add past the count", cfg: Config{ExternalLabels: many(6, "l%d=x"), Labels: strings.Split(many(7, "k%d"), ",")}, wantKey: OptLabels},
		{name: "env adds past the count", cfg: Config{Labels: strings.Split(many(6, "k%d"), ","), Env: strings.Split(many(7, "E%d"), ",")}, wantKey: OptEnv},
		{name: "labels key makes a long name", cfg: Config{Labels: []string{strings.Repeat("k", MaxLabelNameBytes+1)}}, wantKey: OptLabels},
		{name: "env key makes a long name", cfg: Config{Env: []string{"9" + strings.Repeat("K", MaxLabelNameBytes)}}, wantKey: OptEnv},
		{name: "labels keys past their bound", cfg: Config{Labels: slices.Repeat([]string{"a.b", "a-b"}, maxSelectedKeys/2+1)}, wantKey: OptLabels},
		{name: "labels-regex length", cfg: Config{LabelsRegex: strings.Repeat("a", maxRegexBytes+1)}, wantKey: OptLabelsRegex},
		{name: "env-regex length", cfg: Config{EnvRegex: strings.Repeat("a", maxRegexBytes+1)}, wantKey: OptEnvRegex},

		{name: "range", cfg: Config{ExternalLabels: "x={{range .ContainerEnv}}{{.}}{{end}}"}, wantKey: OptExternalLabels, noLimit: true},
		{name: "range over a number", cfg: Config{ExternalLabels: "x={{range .ContainerCreated.Unix}}{{end}}"}, wantKey: OptExternalLabels, noLimit: true},
		{name: "template calling itself", cfg: Config{ExternalLabels: `x=a{{template "x"}}`}, wantKey: OptExternalLabels, noLimit: true},
		{name: "define", cfg: Config{ExternalLabels: `x={{define "y"}}{{.Name}}{{end}}{{.Name}}`}, wantKey: OptExternalLabels, noLimit: true},
		{name: "block", cfg: Config{ExternalLabels: `x={{block "y" .}}{{.Name}}{{end}}`}, wantKey: OptExternalLabels, noLimit: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			if !errors.Is(err, ErrInvalidOption) || !strings.HasPrefix(err.Error(), tt.wantKey+": ") {
				t.Errorf("Validate() = %.300q, want it to start with %q and wrap ErrInvalidOption", err, tt.wantKey)
			}
			if !tt.noLimit && !errors.Is(err, ErrLimit) {
				t.Errorf("Validate() = %.300q, does not wrap ErrLimit", err)
			}
			if len(err.Error()) > 1024 {
				t.Errorf("the error is %d bytes long; it should not echo the whole input", len(err.Error()))
			}
			// Whatever was asked for, refusing it costs what parsing a
			// short template costs.
			if n := allocatedBytes(5, func() { _ = tt.cfg.Validate() }); n > 1<<20 {
				t.Errorf("Validate allocated %d bytes, want less than 1 MiB", n)
			}
		})
	}
}

// TestValidateAcceptsWhatFits checks the bounds are where Loki's are, not
// tighter: each of these is at its limit.
func TestValidateAcceptsWhatFits(t *testing.T) {
	many := func(n int, format string) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf(format, i))
		}
		return out
	}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"pad up to a value", Config{ExternalLabels: "x={{pad .Name 1000 1042}}"}}, // "sample" and 2042 spaces
		{"truncate to a value", Config{ExternalLabels: "x={{truncate .Name 2048}}"}},
		{"truncate count from a variable, harmless", Config{ExternalLabels: "x={{$n := 1000000000}}{{truncate .Name $n}}"}},
		{"printf with widths", Config{ExternalLabels: `x={{printf "%-12s|%8.3f|%[1]q" .Name 3.14159}}`}},
		{"literal of a whole value", Config{ExternalLabels: "x=" + strings.Repeat("y", MaxLabelValueBytes)}},
		{"template of a whole value", Config{ExternalLabels: "x={{.Name}}" + strings.Repeat("y", MaxLabelValueBytes-len("{{.Name}}"))}},
		{"name of Loki's length", Config{ExternalLabels: strings.Repeat("n", MaxLabelNameBytes) + "=x"}},
		{"as many labels as a stream takes", Config{ExternalLabels: strings.Join(many(6, "l%d=x"), ","), Labels: many(3, "k%d"), Env: many(3, "E%d")}},
		{"selected keys that name no label do not count", Config{Labels: append(many(12, "k%d"), "host", "source", "container.name")}},
		{"empty literals do not count", Config{ExternalLabels: strings.Join(many(12, "l%d=x"), ",") + ",container_name=,e="}},
		{"regex of the bound", Config{LabelsRegex: strings.Repeat("a", maxRegexBytes)}},
		{"print, html, js, urlquery", Config{ExternalLabels: `a={{print .Name 1}},b={{html .Name}},c={{js .Name}},d={{urlquery .Name}},e={{println .Name}}`}},
		{"printing labels and env", Config{ExternalLabels: `a={{.ContainerLabels}},b={{printf "%#v|%d" .ContainerEnv .ContainerLabels}},c={{json .ContainerEnv}}`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); err != nil {
				t.Fatalf("Validate() = %.300v", err)
			}
		})
	}
}

func TestTruncateHugeCountIsHarmless(t *testing.T) {
	s := strings.Repeat("é", 100)
	for _, n := range []int{len(s), len(s) + 1, 1 << 30, math.MaxInt} {
		if got := truncateBytes(s, n); got != s {
			t.Errorf("truncateBytes(s, %d) = %q", n, got)
		}
	}
	if a := testing.AllocsPerRun(10, func() { _ = truncateBytes(s, math.MaxInt) }); a != 0 {
		t.Errorf("truncateBytes allocated %v times", a)
	}
	// Through a template, where Validate cannot see the count.
	b, err := NewBuilder(Config{ExternalLabels: "x={{$n := 1000000000}}{{truncate .Name $n}}"}, "h")
	if err != nil {
		t.Fatal(err)
	}
	var set Set
	if n := allocatedBytes(5, func() { set, err = b.Build(web()) }); n > 64<<10 {
		t.Errorf("Build allocated %d bytes", n)
	}
	if err != nil || set.Labels[slices.IndexFunc(set.Labels, func(p Pair) bool { return p.Name == "x" })].Value != "shop-web-1" {
		t.Errorf("Build() = %v, %v", set.Labels, err)
	}
}

// TestBuildKeepsLokiLimits checks what only the container decides, at
// Build: values past Loki's max_label_value_length are cut on a rune
// boundary and counted, labels past max_label_names_per_series or with
// names past max_label_name_length are dropped, deterministically, and
// counted.
func TestBuildKeepsLokiLimits(t *testing.T) {
	long := strings.Repeat("€", 1000) // 3000 bytes; 2048 is inside the 683rd €
	cut := strings.Repeat("€", MaxLabelValueBytes/3)
	manyLabels := func(n int) map[string]string {
		m := map[string]string{"com.docker.compose.project": "shop", "com.docker.compose.service": "web"}
		for i := range n {
			m[fmt.Sprintf("app.k%02d", i)] = "v"
		}
		return m
	}
	externals := func(n int) string {
		var parts []string
		for i := range n {
			parts = append(parts, fmt.Sprintf("e%02d=x", i))
		}
		return strings.Join(parts, ",")
	}
	names := func(prefix string, from, to int) []string {
		var out []string
		for i := from; i < to; i++ {
			out = append(out, fmt.Sprintf(prefix, i))
		}
		return out
	}
	tests := []struct {
		name      string
		cfg       Config
		host      string
		c         metadata.Container
		wantNames []string // the label names kept, sorted
		want      map[string]string
		wantCuts  Cuts
	}{
		{
			name:      "long container label value",
			cfg:       Config{Labels: []string{"desc"}},
			c:         metadata.Container{Name: "x", Labels: map[string]string{"desc": long}},
			wantNames: []string{"container_name", "desc"},
			want:      map[string]string{"desc": cut},
			wantCuts:  Cuts{ValuesTruncated: 1},
		},
		{
			name:      "long and invalid UTF-8",
			cfg:       Config{Env: []string{"BAD"}},
			c:         metadata.Container{Name: "x", Env: []string{"BAD=" + strings.Repeat("a\xff", 2000)}},
			wantNames: []string{"BAD", "container_name"},
			want:      map[string]string{"BAD": strings.Repeat("a\uFFFD", MaxLabelValueBytes/4)},
			wantCuts:  Cuts{ValuesTruncated: 1},
		},
		{
			name:      "value of exactly the limit is kept",
			cfg:       Config{Labels: []string{"desc"}},
			c:         metadata.Container{Name: "x", Labels: map[string]string{"desc": strings.Repeat("d", MaxLabelValueBytes)}},
			wantNames: []string{"container_name", "desc"},
			want:      map[string]string{"desc": strings.Repeat("d", MaxLabelValueBytes)},
		},
		{
			name:      "template output past the limit, written by the container",
			cfg:       Config{ExternalLabels: `d={{index .ContainerLabels "desc"}}{{index .ContainerLabels "desc"}}`},
			c:         metadata.Container{Name: "x", Labels: map[string]string{"desc": long}},
			wantNames: []string{"container_name", "d"},
			want:      map[string]string{"d": cut},
			wantCuts:  Cuts{ValuesTruncated: 1},
		},
		{
			name:      "a template sees at most twice a value of each label",
			cfg:       Config{ExternalLabels: `n={{len (index .ContainerLabels "desc")}}`},
			c:         metadata.Container{Name: "x", Labels: map[string]string{"desc": strings.Repeat("d", 1<<20)}},
			wantNames: []string{"container_name", "n"},
			want:      map[string]string{"n": fmt.Sprint(maxTemplateString)},
		},
		{
			name:      "a long host",
			host:      strings.Repeat("h", 3000),
			c:         metadata.Container{Name: "x"},
			wantNames: []string{"container_name", "host"},
			want:      map[string]string{"host": strings.Repeat("h", MaxLabelValueBytes)},
			wantCuts:  Cuts{ValuesTruncated: 1},
		},
		{
			name: "labels-regex matching more than a stream takes",
			cfg:  Config{LabelsRegex: `^app\.`},
			host: "node1",
			c:    metadata.Container{Name: "x", Labels: manyLabels(30)},
			// 14 with source: 4 defaults, then matches in key order.
			wantNames: append(names("app_k%02d", 0, 10), "compose_project", "compose_service", "container_name", "host"),
			wantCuts:  Cuts{LabelsDropped: 20},
		},
		{
			name:      "compose labels push configured labels out, the last given first",
			cfg:       Config{ExternalLabels: externals(12)},
			host:      "node1",
			c:         metadata.Container{Name: "x", Labels: manyLabels(0)},
			wantNames: append([]string{"compose_project", "compose_service", "container_name"}, append(names("e%02d", 0, 10), "host")...),
			wantCuts:  Cuts{LabelsDropped: 2},
		},
		{
			name: "explicit keys before regex matches",
			cfg:  Config{Labels: []string{"z.last"}, Env: []string{"ZZ"}, LabelsRegex: `^app\.`, EnvRegex: "^A"},
			c: metadata.Container{Name: "x", Labels: map[string]string{"z.last": "1", "app.a": "1", "app.b": "1"},
				Env: append([]string{"ZZ=1"}, names("A%02d=1", 0, 20)...)},
			wantNames: append([]string{"ZZ", "app_a", "app_b", "container_name", "z_last"}, names("A%02d", 0, 9)...),
			wantCuts:  Cuts{LabelsDropped: 11},
		},
		{
			name:      "printing more labels than a value holds prints their number",
			cfg:       Config{ExternalLabels: "all={{.ContainerLabels}}"},
			c:         metadata.Container{Name: "x", Labels: manyLabels(1000)},
			wantNames: []string{"all", "compose_project", "compose_service", "container_name"},
			want:      map[string]string{"all": "map[1002 labels]"},
		},
		{
			name:      "a name past Loki's length from a regex match",
			cfg:       Config{LabelsRegex: "^k"},
			c:         metadata.Container{Name: "x", Labels: map[string]string{"k" + strings.Repeat("x", MaxLabelNameBytes): "v", "kk": "v"}},
			wantNames: []string{"container_name", "kk"},
			wantCuts:  Cuts{LabelsDropped: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBuilder(tt.cfg, tt.host)
			if err != nil {
				t.Fatal(err)
			}
			set, err := b.Build(tt.c)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range set.Labels {
				got = append(got, p.Name)
				if want, ok := tt.want[p.Name]; ok && p.Value != want {
					t.Errorf("%s = %d bytes %.20q..., want %d bytes %.20q...", p.Name, len(p.Value), p.Value, len(want), want)
				}
			}
			slices.Sort(tt.wantNames)
			if !slices.Equal(got, tt.wantNames) {
				t.Errorf("label names\n got %v\nwant %v", got, tt.wantNames)
			}
			if set.Cuts != tt.wantCuts {
				t.Errorf("Cuts = %+v, want %+v", set.Cuts, tt.wantCuts)
			}
			checkLokiLimits(t, set)
			checkInvariants(t, set)
			for range 10 { // maps iterate in random order
				again, _ := b.Build(tt.c)
				if again.Stream(SourceStdout) != set.Stream(SourceStdout) || again.Cuts != set.Cuts {
					t.Fatalf("Build is not deterministic: %s vs %s", again.Stream(SourceStdout), set.Stream(SourceStdout))
				}
			}
		})
	}
}

// checkLokiLimits checks a Set against Loki's default limits_config.
func checkLokiLimits(t *testing.T, s Set) {
	t.Helper()
	if n := len(s.Labels) + 1; n > MaxLabelsPerStream {
		t.Errorf("%d labels with source, more than %d", n, MaxLabelsPerStream)
	}
	for _, p := range s.Labels {
		if len(p.Name) > MaxLabelNameBytes {
			t.Errorf("name of %d bytes", len(p.Name))
		}
		if len(p.Value) > MaxLabelValueBytes || !utf8.ValidString(p.Value) {
			t.Errorf("%s: value of %d bytes, valid UTF-8 %v", p.Name, len(p.Value), utf8.ValidString(p.Value))
		}
	}
}

func TestBoundValue(t *testing.T) {
	tests := []struct {
		name, in, want string
		cut            bool
	}{
		{name: "short", in: "abc", want: "abc"},
		{name: "limit", in: strings.Repeat("a", MaxLabelValueBytes), want: strings.Repeat("a", MaxLabelValueBytes)},
		{name: "one over", in: strings.Repeat("a", MaxLabelValueBytes+1), want: strings.Repeat("a", MaxLabelValueBytes), cut: true},
		{name: "rune straddling the limit", in: strings.Repeat("a", MaxLabelValueBytes-1) + "é", want: strings.Repeat("a", MaxLabelValueBytes-1), cut: true},
		{name: "invalid, short", in: "a\xff\xfeb", want: "a\uFFFDb"},
		{name: "long run of invalid bytes is one U+FFFD", in: "a" + strings.Repeat("\xff", 1<<20), want: "a\uFFFD"},
		{name: "invalid, repaired past the limit", in: strings.Repeat("a\xff", MaxLabelValueBytes/2), want: strings.Repeat("a\uFFFD", MaxLabelValueBytes/4), cut: true},
		{name: "U+FFFD in the input is kept", in: "\uFFFD", want: "\uFFFD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, cut := boundValue(tt.in)
			if got != tt.want || cut != tt.cut {
				t.Errorf("boundValue = %d bytes %.20q, %v; want %d bytes %.20q, %v", len(got), got, cut, len(tt.want), tt.want, tt.cut)
			}
			if !cut && got != sanitizeValue(tt.in) {
				t.Errorf("uncut value differs from sanitizeValue")
			}
		})
	}
}

// FuzzExternalLabels gives the label builder any loki-external-labels
// option and container metadata: it must return an error or a Set within
// Loki's limits, never panic, and allocate a bounded amount whatever the
// sizes in the template.
func FuzzExternalLabels(f *testing.F) {
	f.Add("x={{pad .Name 300000000 0}}", "web", "k", "v")
	f.Add(`a={{.ID}},b={{upper .Name}},c={{truncate .FullID 6}},d={{json .ContainerLabels}}`, "/shop-web-1", "com.example.team", "payments")
	f.Add(`x={{printf "%-20s|%q" .Name (index .ContainerLabels "k")}}`, "n", "k", "a\"b")
	f.Add(`x={{join (split .Name "-") "_"}}{{title .ImageName}}`, "a-b-c", "", "")
	f.Add(`x={{js (js (js (index .ContainerLabels "k")))}}`, "n", "k", `\\\\<>`)
	f.Add(`x={{if eq .Name "n"}}{{.ContainerEnv}}{{else}}{{.ContainerCreated.Format "2006"}}{{end}}`, "n", "K", "V")
	f.Add(`x={{with $l := .ContainerLabels}}{{len $l}}{{index $l "k"}}{{end}}`, "n", "k", "\xff\xfe")
	f.Add(`x={{slice .Name 1 3}}{{html .}}{{urlquery .Name}}`, "name", "k", "v")
	f.Fuzz(func(t *testing.T, ext, name, key, value string) {
		// One container label: with more, the random order of map
		// iteration would make coverage vary between runs of one input,
		// and the fuzzer spend its time minimizing.
		c := metadata.Container{
			ID: fullID, Name: name, ImageName: value, ImageID: imageID,
			Labels:  map[string]string{key: value},
			Env:     []string{key + "=" + value, "PATH=/bin"},
			Created: web().Created,
		}
		var set Set
		var err error
		n := allocatedBytes(1, func() {
			var b *Builder
			if b, err = NewBuilder(Config{ExternalLabels: ext, LabelsRegex: ".", EnvRegex: "."}, "h"); err == nil {
				set, err = b.Build(c)
			}
		})
		// Input and metadata are small; the bound is on what a template
		// can make of them.
		if n > 64<<20 {
			t.Fatalf("%d bytes allocated for %q", n, ext)
		}
		if err != nil {
			return
		}
		checkLokiLimits(t, set)
		checkInvariants(t, set)
	})
}
