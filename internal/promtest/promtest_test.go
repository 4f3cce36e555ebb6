package promtest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestRender: the configuration file scrapes every job's targets and loads
// the rule files; promtool, when installed, accepts it.
func TestRender(t *testing.T) {
	rules := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rules, []byte("groups: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := render(Config{ScrapeInterval: time.Second, RuleFiles: []string{rules},
		Jobs: map[string][]string{"b": {"127.0.0.1:2"}, "a": {"127.0.0.1:1", "127.0.0.1:3"}}})
	want := `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - "` + rules + `"
scrape_configs:
  - job_name: "a"
    static_configs:
      - targets:
          - "127.0.0.1:1"
          - "127.0.0.1:3"
  - job_name: "b"
    static_configs:
      - targets:
          - "127.0.0.1:2"
`
	if cfg != want {
		t.Fatalf("config:\n%s\nwant:\n%s", cfg, want)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not installed: the file is not checked by it")
		return
	}
	file := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(file, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", file).CombinedOutput(); err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
}

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/query_range":
			if r.FormValue("query") == "bad(" {
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
				return
			}
			_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"matrix","result":[
				{"metric":{"job":"a"},"values":[[1700000000,"1"],[1700000002,"2.5"]]}]}}`))
		case "/api/v1/query":
			_, _ = w.Write([]byte(`{"status":"success","warnings":["too many"],"data":{"resultType":"vector","result":[]}}`))
		case "/api/v1/rules":
			_, _ = w.Write([]byte(`{"status":"success","data":{"groups":[{"name":"g","rules":[
				{"name":"Down","query":"up == 0","type":"alerting","health":"ok","state":"pending",
				 "lastEvaluation":"2026-01-02T03:04:05Z",
				 "alerts":[{"labels":{"job":"x"},"state":"pending","activeAt":"2026-01-02T03:04:00Z","value":"0e+00"}]}]}]}}`))
		}
	}))
	defer srv.Close()
	c := NewClient(srv.URL)
	ctx := context.Background()
	m, err := c.QueryRange(ctx, "up", time.Unix(1700000000, 0), time.Unix(1700000002, 0), 2*time.Second)
	if err != nil || len(m) != 1 || len(m[0].Values) != 2 || m[0].Values[1].Value != 2.5 || m[0].Metric["job"] != "a" {
		t.Fatalf("QueryRange: %v %v", m, err)
	}
	if _, err := c.QueryRange(ctx, "bad(", time.Now(), time.Now(), time.Second); !errors.Is(err, ErrAPI) {
		t.Fatalf("a bad query: want ErrAPI, got %v", err)
	}
	if _, err := c.Query(ctx, "up", time.Now()); !errors.Is(err, ErrAPI) {
		t.Fatalf("warnings: want ErrAPI, got %v", err)
	}
	rules, err := c.Rules(ctx)
	if err != nil || len(rules) != 1 || rules[0].Health != "ok" || rules[0].Alerts[0].State != "pending" ||
		rules[0].LastEvaluation.IsZero() {
		t.Fatalf("Rules: %+v %v", rules, err)
	}
}
