package sidecar

import (
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCheckLogPath(t *testing.T) {
	const (
		dir   = "/var/lib/docker/containers"
		id    = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
		other = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	)
	own := dir + "/" + id + "/" + id + "-json.log"
	for _, tc := range []struct {
		name             string
		dir, id, logPath string
		ok               bool
	}{
		{"the container's own log", dir, id, own, true},
		{"containers dir with a trailing slash", dir + "/", id, own, true},
		{"containers dir not clean", "/var/lib/docker/./containers", id, own, true},
		{"doubled slash in the log path", dir, id, dir + "//" + id + "/" + id + "-json.log", true},
		{"relative containers dir", "containers", id, "containers/" + id + "/" + id + "-json.log", true},

		{"empty log path", dir, id, "", false},
		{"empty containers dir", "", id, own, false},
		{"out with ..", dir, id, dir + "/" + id + "/../../../../etc/shadow", false},
		{"out and back in with ..", dir, id, dir + "/" + id + "/../" + id + "/" + id + "-json.log", false},
		{"into another container with ..", dir, id, dir + "/" + id + "/../" + other + "/" + other + "-json.log", false},
		{"another container's log", dir, id, dir + "/" + other + "/" + other + "-json.log", false},
		{"another container's file in its own dir", dir, id, dir + "/" + id + "/" + other + "-json.log", false},
		{"another file of the container", dir, id, dir + "/" + id + "/config.v2.json", false},
		{"a rotated file", dir, id, own + ".1", false},
		{"the container's directory", dir, id, dir + "/" + id, false},
		{"a different dir", dir, id, "/var/lib/other/" + id + "/" + id + "-json.log", false},
		{"a dir beside the containers dir", dir, id, dir + "-x/" + id + "/" + id + "-json.log", false},
		{"a host file", dir, id, "/etc/shadow", false},
		{"relative log path", dir, id, id + "/" + id + "-json.log", false},
		{"id with /", dir, "../" + id[3:], dir + "/../" + id[3:] + "/../" + id[3:] + "-json.log", false},
		{"id with / that cleans in", dir, id[:30] + "/" + id[31:], dir + "/" + id[:30] + "/" + id[31:] + "/" + id[:30] + "/" + id[31:] + "-json.log", false},
		{"empty id", dir, "", dir + "//-json.log", false},
		{"short id", dir, id[:12], dir + "/" + id[:12] + "/" + id[:12] + "-json.log", false},
		{"upper-case id", dir, strings.ToUpper(id), dir + "/" + strings.ToUpper(id) + "/" + strings.ToUpper(id) + "-json.log", false},
		{"id of .", dir, ".", dir + "/./.-json.log", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLogPath(tc.dir, tc.id, tc.logPath)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrLogPathOutside) {
				t.Fatalf("checkLogPath = %v, want ErrLogPathOutside", err)
			}
			if tc.logPath != "" && !strings.Contains(err.Error(), tc.logPath) {
				t.Errorf("the error does not name the path: %v", err)
			}
		})
	}
}

// TestRouteRefusesLogPathOutside: a json-file container whose LogPath is
// not its own file under containers-dir goes to the logs API, counted.
func TestRouteRefusesLogPathOutside(t *testing.T) {
	r, _, _ := newTestRouter(t, slog.New(slog.DiscardHandler))
	id := strings.Repeat("0123abcd", 8)
	for _, tt := range []struct {
		logPath string
		want    string
	}{
		{"/nonexistent/" + id + "/" + id + "-json.log", RouteFile},
		{"/etc/shadow", RouteAPI},
		{"/nonexistent/" + id + "/../" + id + "/" + id + "-json.log", RouteAPI},
	} {
		c := ctr(id)
		c.LogPath = tt.logPath
		if got := r.route(c); got != tt.want {
			t.Errorf("LogPath %s: route %s, want %s", tt.logPath, got, tt.want)
		}
	}
	if got := testutil.ToFloat64(r.m.filesRefused.WithLabelValues(refusedOutside)); got != 2 {
		t.Errorf("refused log paths counted %v, want 2", got)
	}
}
