package labels

import (
	"errors"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantKey string // option key the error must start with; "" = valid
		wantMsg string // also in the message
	}{
		{name: "zero config", cfg: Config{}},
		{name: "default config", cfg: DefaultConfig()},
		{name: "loki driver default", cfg: Config{ExternalLabels: "container_name={{.Name}}"}},
		{name: "every tag field", cfg: Config{ExternalLabels: "a={{.ID}},b={{.FullID}},c={{.Name}},d={{.ImageName}},e={{.ImageID}},f={{.ImageFullID}},g={{.DaemonName}},h={{.Hostname}}"}},
		{name: "logger.Info fields", cfg: Config{ExternalLabels: `a={{.ContainerID}},b={{.ContainerName}},c={{.ContainerImageName}},d={{.ContainerImageID}},e={{index .ContainerLabels "x"}},f={{.ContainerLabels.x}},g={{len .ContainerEnv}},h={{.ContainerCreated.Year}}`}},
		{name: "docker functions", cfg: Config{ExternalLabels: `a={{upper .Name}},b={{lower .Name}},c={{title .Name}},d={{truncate .FullID 4}},e={{pad .Name 1 1}},f={{json .ContainerLabels}},g={{join (split .Name "a") "-"}}`}},
		{name: "plain values", cfg: Config{ExternalLabels: "job=docker,env=prod"}},
		{name: "spaces around pairs", cfg: Config{ExternalLabels: " job = docker , env=prod "}},
		{name: "equals in value", cfg: Config{ExternalLabels: "query=a=b"}},
		{name: "empty value", cfg: Config{ExternalLabels: "container_name="}},
		{name: "blank", cfg: Config{ExternalLabels: "   "}},
		{name: "regexes", cfg: Config{LabelsRegex: `^com\.example\.`, EnvRegex: "^APP_"}},
		{name: "keys", cfg: Config{Labels: []string{"a", "", "b.c"}, Env: []string{"A", ""}}},

		{name: "no equals", cfg: Config{ExternalLabels: "job"}, wantKey: OptExternalLabels, wantMsg: `"job" is not name=value`},
		{name: "trailing comma", cfg: Config{ExternalLabels: "job=x,"}, wantKey: OptExternalLabels, wantMsg: `"" is not name=value`},
		{name: "empty name", cfg: Config{ExternalLabels: "=x"}, wantKey: OptExternalLabels, wantMsg: "not a valid label name"},
		{name: "dotted name", cfg: Config{ExternalLabels: "com.example=x"}, wantKey: OptExternalLabels, wantMsg: `"com.example" is not a valid label name`},
		{name: "digit first", cfg: Config{ExternalLabels: "1x=y"}, wantKey: OptExternalLabels, wantMsg: "not a valid label name"},
		{name: "reserved prefix", cfg: Config{ExternalLabels: "__name__=x"}, wantKey: OptExternalLabels, wantMsg: "reserved"},
		{name: "source", cfg: Config{ExternalLabels: "source=x"}, wantKey: OptExternalLabels, wantMsg: "per entry"},
		{name: "host", cfg: Config{ExternalLabels: "host=x"}, wantKey: OptExternalLabels, wantMsg: "host name"},
		{name: "duplicate", cfg: Config{ExternalLabels: "a=1,b=2,a=3"}, wantKey: OptExternalLabels, wantMsg: `"a" given twice`},
		{name: "unclosed action", cfg: Config{ExternalLabels: "a={{.Name"}, wantKey: OptExternalLabels, wantMsg: `label "a"`},
		{name: "unknown function", cfg: Config{ExternalLabels: "a={{nope .Name}}"}, wantKey: OptExternalLabels, wantMsg: "nope"},
		{name: "unknown field", cfg: Config{ExternalLabels: "a={{.Nope}}"}, wantKey: OptExternalLabels, wantMsg: "Nope"},
		{name: "unsupported Command", cfg: Config{ExternalLabels: "a=x,b={{.Command}}"}, wantKey: OptExternalLabels, wantMsg: `label "b"`},
		{name: "bad labels-regex", cfg: Config{LabelsRegex: "a("}, wantKey: OptLabelsRegex, wantMsg: "missing closing )"},
		{name: "bad env-regex", cfg: Config{EnvRegex: "[z-a]"}, wantKey: OptEnvRegex, wantMsg: "invalid character class range"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			_, nbErr := NewBuilder(tt.cfg, "h")
			if (err == nil) != (nbErr == nil) {
				t.Fatalf("Validate() = %v but NewBuilder() = %v", err, nbErr)
			}
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate() = nil, want an error")
			}
			if !errors.Is(err, ErrInvalidOption) {
				t.Errorf("Validate() = %v, does not wrap ErrInvalidOption", err)
			}
			if !strings.HasPrefix(err.Error(), tt.wantKey+": ") {
				t.Errorf("Validate() = %q, want it to start with %q", err, tt.wantKey+": ")
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.wantMsg)
			}
		})
	}
}

func TestRegexErrorIsWrapped(t *testing.T) {
	err := Config{LabelsRegex: "("}.Validate()
	var syntaxErr *syntax.Error
	if !errors.As(err, &syntaxErr) || !errors.Is(err, ErrInvalidOption) {
		t.Fatalf("Validate() = %v", err)
	}
	if _, compileErr := regexp.Compile("("); !strings.Contains(err.Error(), compileErr.Error()) {
		t.Errorf("Validate() = %q, want the regexp error %q in it", err, compileErr)
	}
}

func TestTemplatesParsedOnce(t *testing.T) {
	b, err := NewBuilder(Config{ExternalLabels: "plain=x,tmpl={{.Name}}"}, "h")
	if err != nil {
		t.Fatal(err)
	}
	ext := b.cfg.external
	if len(ext) != 2 || ext[0].tmpl != nil || ext[0].text != "x" || ext[1].tmpl == nil {
		t.Fatalf("compiled external labels = %+v; want the plain value kept as text and the template parsed", ext)
	}
}
