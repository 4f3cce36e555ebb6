package labels

import "testing"

func BenchmarkBuild(b *testing.B) {
	cases := []struct {
		name string
		cfg  Config
	}{
		{"defaults", Config{}},
		{"plain external", Config{ExternalLabels: "job=docker,env=prod"}},
		{"templates", Config{ExternalLabels: "container_name={{.Name}},image={{.ImageName}},short={{.ID}}"}},
		{"labels and env", Config{Labels: []string{"com.example.team"}, LabelsRegex: `^com\.example\.`, Env: []string{"SECRET"}, EnvRegex: "^APP_"}},
	}
	c := web()
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			builder, err := NewBuilder(tc.cfg, "node1")
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := builder.Build(c); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkStream(b *testing.B) {
	builder, err := NewBuilder(Config{}, "node1")
	if err != nil {
		b.Fatal(err)
	}
	s, err := builder.Build(web())
	if err != nil {
		b.Fatal(err)
	}
	for _, src := range []string{SourceStdout, "other"} {
		b.Run(src, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = s.Stream(src)
			}
		})
	}
}

func BenchmarkSanitizeLabelName(b *testing.B) {
	for _, key := range []string{"already_valid", "com.example.team"} {
		b.Run(key, func(b *testing.B) {
			b.SetBytes(int64(len(key)))
			b.ReportAllocs()
			for b.Loop() {
				_ = SanitizeLabelName(key)
			}
		})
	}
}
