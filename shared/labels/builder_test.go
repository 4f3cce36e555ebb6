package labels

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/logferry/logferry/shared/metadata"
)

const (
	fullID  = "4f6a1c2b3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8"
	imageID = "sha256:9a8b7c6d5e4f30211203f4e5d6c7b8a99a8b7c6d5e4f30211203f4e5d6c7b8a9"
)

// web is a typical compose container, as both capture styles see it.
func web() metadata.Container {
	return metadata.Container{
		ID:        fullID,
		Name:      "/shop-web-1",
		ImageName: "nginx:1.27",
		ImageID:   imageID,
		Labels: map[string]string{
			"com.docker.compose.project": "shop",
			"com.docker.compose.service": "web",
			"com.example.team":           "payments",
			"com.example.tier":           "front",
			"maintainer":                 "ops@example.com",
		},
		Env:        []string{"PATH=/usr/bin", "APP_MODE=prod", "APP_REGION=eu", "SECRET=hunter2"},
		Created:    time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC),
		DaemonName: "docker",
	}
}

func with(c metadata.Container, f func(*metadata.Container)) metadata.Container {
	c.Labels = maps(c.Labels)
	c.Env = slices.Clone(c.Env)
	f(&c)
	return c
}

func maps(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// L builds a label list from "name=value" strings, in the order given.
func L(kvs ...string) []Pair {
	out := make([]Pair, 0, len(kvs))
	for _, kv := range kvs {
		n, v, _ := strings.Cut(kv, "=")
		out = append(out, Pair{n, v})
	}
	return out
}

var defaultSM = L("container_id="+fullID, "image_id="+imageID, "image_name=nginx:1.27")

func TestBuild(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		host   string
		c      metadata.Container
		want   []Pair
		wantSM []Pair // nil means defaultSM
	}{
		{
			name: "defaults for a compose container",
			host: "node1",
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "container_name=shop-web-1", "host=node1"),
		},
		{
			name: "plain container, no host",
			c: metadata.Container{
				ID: fullID, Name: "/lonely", ImageName: "busybox", ImageID: imageID,
			},
			want:   L("container_name=lonely"),
			wantSM: L("container_id="+fullID, "image_id="+imageID, "image_name=busybox"),
		},
		{
			name: "name already without slash",
			host: "node1",
			c:    with(web(), func(c *metadata.Container) { c.Name = "shop-web-1" }),
			want: L("compose_project=shop", "compose_service=web", "container_name=shop-web-1", "host=node1"),
		},
		{
			name: "swarm",
			host: "node1",
			c: metadata.Container{ID: fullID, Name: "/prod_api.1.xyz", Labels: map[string]string{
				"com.docker.stack.namespace":    "prod",
				"com.docker.swarm.service.name": "prod_api",
			}},
			want:   L("container_name=prod_api.1.xyz", "host=node1", "swarm_service=prod_api", "swarm_stack=prod"),
			wantSM: L("container_id=" + fullID),
		},
		{
			name: "empty compose label omitted",
			host: "node1",
			c: metadata.Container{ID: fullID, Name: "/x", Labels: map[string]string{
				"com.docker.compose.project": "",
			}},
			want:   L("container_name=x", "host=node1"),
			wantSM: L("container_id=" + fullID),
		},
		{
			name: "external labels with every tag field",
			cfg: Config{ExternalLabels: "id={{.ID}},full={{.FullID}},name={{.Name}},img={{.ImageName}}," +
				"imgid={{.ImageID}},imgfull={{.ImageFullID}},daemon={{.DaemonName}},hn={{.Hostname}}"},
			host: "node1",
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "container_name=shop-web-1",
				"daemon=docker", "full="+fullID, "hn=node1", "host=node1", "id=4f6a1c2b3d4e",
				"img=nginx:1.27", "imgfull="+imageID, "imgid=sha256:9a8b7", "name=shop-web-1"),
		},
		{
			name: "logger.Info fields and functions",
			cfg: Config{ExternalLabels: `cname={{.ContainerName}},team={{index .ContainerLabels "com.example.team"}},` +
				`missing={{.ContainerLabels.nope}},year={{.ContainerCreated.Year}},up={{upper .Name}},` +
				`short={{truncate .FullID 6}},json={{json .Name}}`},
			host: "node1",
			c:    web(),
			want: L("cname=/shop-web-1", "compose_project=shop", "compose_service=web", "container_name=shop-web-1",
				"host=node1", `json="shop-web-1"`, "short=4f6a1c", "team=payments", "up=SHOP-WEB-1", "year=2025"),
		},
		{
			name: "loki driver default is the same as ours",
			cfg:  Config{ExternalLabels: "container_name={{.Name}}"},
			host: "node1",
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "container_name=shop-web-1", "host=node1"),
		},
		{
			name: "external labels keep container_name unless they set it",
			cfg:  Config{ExternalLabels: "job=docker"},
			host: "node1",
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "container_name=shop-web-1", "host=node1", "job=docker"),
		},
		{
			name: "external container_name overrides",
			cfg:  Config{ExternalLabels: "container_name={{.ImageName}}/{{.Name}}"},
			host: "node1",
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "container_name=nginx:1.27/shop-web-1", "host=node1"),
		},
		{
			name: "empty external container_name removes it",
			cfg:  Config{ExternalLabels: "container_name=,job=docker"},
			host: "node1",
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "host=node1", "job=docker"),
		},
		{
			name: "template expanding to empty omits the label",
			cfg:  Config{ExternalLabels: "svc={{.ContainerLabels.nope}}"},
			host: "node1",
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "container_name=shop-web-1", "host=node1"),
		},
		{
			name: "compose labels override external labels of the same name",
			cfg:  Config{ExternalLabels: "compose_project=mine"},
			host: "node1",
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "container_name=shop-web-1", "host=node1"),
		},
		{
			name: "labels option, sanitized, missing ones skipped",
			cfg:  Config{Labels: []string{"com.example.team", "absent", "maintainer"}},
			host: "node1",
			c:    web(),
			want: L("com_example_team=payments", "compose_project=shop", "compose_service=web",
				"container_name=shop-web-1", "host=node1", "maintainer=ops@example.com"),
		},
		{
			name: "labels-regex is unanchored and sanitized",
			cfg:  Config{LabelsRegex: `example\.t`},
			host: "node1",
			c:    web(),
			want: L("com_example_team=payments", "com_example_tier=front", "compose_project=shop", "compose_service=web",
				"container_name=shop-web-1", "host=node1"),
		},
		{
			name: "labels-regex without labels (moby only applies it when labels is set; we do not copy that)",
			cfg:  Config{LabelsRegex: "^maintainer$"},
			c:    web(),
			want: L("compose_project=shop", "compose_service=web", "container_name=shop-web-1", "maintainer=ops@example.com"),
		},
		{
			name: "env and env-regex",
			cfg:  Config{Env: []string{"SECRET", "NOPE"}, EnvRegex: "^APP_"},
			host: "node1",
			c:    web(),
			want: L("APP_MODE=prod", "APP_REGION=eu", "SECRET=hunter2", "compose_project=shop", "compose_service=web",
				"container_name=shop-web-1", "host=node1"),
		},
		{
			name: "env duplicates: last wins, as in Docker",
			cfg:  Config{Env: []string{"A"}, EnvRegex: "^B$"},
			c:    metadata.Container{Name: "x", Env: []string{"A=1", "B=1", "A=2", "B=2", "NOVALUE"}},
			want: L("A=2", "B=2", "container_name=x"), wantSM: []Pair{},
		},
		{
			name: "container labels override external labels; env overrides labels",
			cfg:  Config{ExternalLabels: "team=ext", Labels: []string{"team"}, Env: []string{"team"}},
			c: metadata.Container{Name: "x", Labels: map[string]string{"team": "from-label"},
				Env: []string{"team=from-env"}},
			want: L("container_name=x", "team=from-env"), wantSM: []Pair{},
		},
		{
			name: "selected keys never become host or source",
			cfg:  Config{Labels: []string{"host", "source"}, EnvRegex: "."},
			host: "node1",
			c: metadata.Container{Name: "x", Labels: map[string]string{"host": "evil", "source": "evil"},
				Env: []string{"host=evil", "source=evil"}},
			want: L("container_name=x", "host=node1"), wantSM: []Pair{},
		},
		{
			name: "selected keys can set container_name (Loki driver order)",
			cfg:  Config{Labels: []string{"container.name"}},
			c:    metadata.Container{Name: "x", Labels: map[string]string{"container.name": "y"}},
			want: L("container_name=y"), wantSM: []Pair{},
		},
		{
			name: "keys that sanitize alike resolve in sorted key order",
			cfg:  Config{LabelsRegex: "^a"},
			c: metadata.Container{Name: "x", Labels: map[string]string{
				"a.b": "dot", "a-b": "dash", "a_b": "underscore", "a/b": "slash",
			}},
			// sorted keys: a-b, a.b, a/b, a_b; the last one wins
			want: L("a_b=underscore", "container_name=x"), wantSM: []Pair{},
		},
		{
			name: "empty container label value omits the label",
			cfg:  Config{ExternalLabels: "team=ext", Labels: []string{"team"}},
			c:    metadata.Container{Name: "x", Labels: map[string]string{"team": ""}},
			want: L("container_name=x"), wantSM: []Pair{},
		},
		{
			name: "invalid UTF-8 values are repaired",
			cfg:  Config{Labels: []string{"bad"}},
			host: "h\xff",
			c:    metadata.Container{ID: "id\xfe", Name: "x", Labels: map[string]string{"bad": "a\xffb"}},
			want: L("bad=a\uFFFDb", "container_name=x", "host=h\uFFFD"), wantSM: L("container_id=id\uFFFD"),
		},
		{
			name:   "a label named like structured metadata suppresses it",
			cfg:    Config{ExternalLabels: "container_id={{.FullID}},image_name={{.ImageName}}"},
			c:      web(),
			want:   L("compose_project=shop", "compose_service=web", "container_id="+fullID, "container_name=shop-web-1", "image_name=nginx:1.27"),
			wantSM: L("image_id=" + imageID),
		},
		{
			name: "nothing at all",
			c:    metadata.Container{},
			want: []Pair{}, wantSM: []Pair{},
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
			if !pairsEqual(set.Labels, tt.want) {
				t.Errorf("Labels =\n  %v\nwant\n  %v", set.Labels, tt.want)
			}
			wantSM := tt.wantSM
			if wantSM == nil {
				wantSM = defaultSM
			}
			if !pairsEqual(set.StructuredMetadata, wantSM) {
				t.Errorf("StructuredMetadata = %v, want %v", set.StructuredMetadata, wantSM)
			}
			checkInvariants(t, set)
		})
	}
}

func pairsEqual(a, b []Pair) bool {
	return len(a) == len(b) && (len(a) == 0 || slices.Equal(a, b))
}

// checkInvariants checks what every Set promises.
func checkInvariants(t *testing.T, s Set) {
	t.Helper()
	for _, ps := range [][]Pair{s.Labels, s.StructuredMetadata} {
		if !slices.IsSortedFunc(ps, func(a, b Pair) int { return strings.Compare(a.Name, b.Name) }) {
			t.Errorf("not sorted: %v", ps)
		}
		for i, p := range ps {
			if !IsValidLabelName(p.Name) || strings.HasPrefix(p.Name, "__") {
				t.Errorf("invalid name %q", p.Name)
			}
			if p.Value == "" {
				t.Errorf("empty value for %q", p.Name)
			}
			if i > 0 && ps[i-1].Name == p.Name {
				t.Errorf("duplicate name %q", p.Name)
			}
		}
	}
	for _, p := range s.Labels {
		if p.Name == LabelSource {
			t.Errorf("Labels contain source")
		}
	}
	for _, src := range []string{SourceStdout, SourceStderr} {
		got, err := parseStream(s.Stream(src))
		if err != nil {
			t.Fatalf("Stream(%q) = %q does not parse: %v", src, s.Stream(src), err)
		}
		want := append(slices.Clone(s.Labels), Pair{LabelSource, src})
		slices.SortFunc(want, func(a, b Pair) int { return strings.Compare(a.Name, b.Name) })
		if !slices.Equal(got, want) {
			t.Errorf("Stream(%q) parses to %v, want %v", src, got, want)
		}
	}
}

func TestBuildSameWhicheverStyleCaptured(t *testing.T) {
	// The plugin fills a Container from StartLogging's Info, the sidecar
	// from inspect; the differences they may leave (leading '/', a map and
	// slice of their own, the cache having normalized the name or not)
	// must not change the Set.
	plugin := web()
	sidecar := with(web(), func(c *metadata.Container) { c.Name = strings.TrimPrefix(c.Name, "/") })
	b, err := NewBuilder(Config{ExternalLabels: "job=docker,cname={{.ContainerName}}", LabelsRegex: "example", EnvRegex: "^APP_"}, "node1")
	if err != nil {
		t.Fatal(err)
	}
	s1, err := b.Build(plugin)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := b.Build(sidecar)
	if err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{SourceStdout, SourceStderr, "", "other"} {
		if s1.Stream(src) != s2.Stream(src) {
			t.Errorf("Stream(%q): plugin %s, sidecar %s", src, s1.Stream(src), s2.Stream(src))
		}
	}
	if !slices.Equal(s1.StructuredMetadata, s2.StructuredMetadata) {
		t.Errorf("structured metadata differ: %v vs %v", s1.StructuredMetadata, s2.StructuredMetadata)
	}
	// And Build is deterministic: maps iterate in random order.
	for range 20 {
		s, _ := b.Build(plugin)
		if s.Stream(SourceStdout) != s1.Stream(SourceStdout) {
			t.Fatalf("Build not deterministic: %s vs %s", s.Stream(SourceStdout), s1.Stream(SourceStdout))
		}
	}
}

func TestBuildTemplateError(t *testing.T) {
	// Passes the dry run (the sample has one env entry), fails on a
	// container without any.
	b, err := NewBuilder(Config{ExternalLabels: "first_env={{index .ContainerEnv 0}}"}, "h")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(web()); err != nil {
		t.Fatalf("Build(web) = %v", err)
	}
	_, err = b.Build(metadata.Container{ID: fullID, Name: "x"})
	if err == nil || !strings.HasPrefix(err.Error(), OptExternalLabels+`: label "first_env": `) {
		t.Fatalf("Build() = %v, want an error naming the option and label", err)
	}
}

func TestBuildDoesNotModifyContainer(t *testing.T) {
	c := web()
	orig := with(c, func(*metadata.Container) {})
	b, err := NewBuilder(Config{ExternalLabels: "n={{.Name}}", LabelsRegex: ".", EnvRegex: "."}, "h")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Build(c); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(c) != fmt.Sprint(orig) {
		t.Errorf("Build modified its input:\n%v\n%v", c, orig)
	}
}

func TestBuildConcurrent(t *testing.T) {
	b, err := NewBuilder(Config{ExternalLabels: "id={{.ID}}", LabelsRegex: "example", EnvRegex: "^APP_"}, "node1")
	if err != nil {
		t.Fatal(err)
	}
	want, err := b.Build(web())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				got, err := b.Build(web())
				if err != nil || got.Stream(SourceStderr) != want.Stream(SourceStderr) {
					t.Errorf("concurrent Build = %v, %v", got.Stream(SourceStderr), err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestNewBuilderErrorIsValidateError(t *testing.T) {
	_, err := NewBuilder(Config{ExternalLabels: "bad name=x"}, "h")
	if !errors.Is(err, ErrInvalidOption) || !strings.HasPrefix(err.Error(), OptExternalLabels) {
		t.Fatalf("NewBuilder() = %v", err)
	}
}
