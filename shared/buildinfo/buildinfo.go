// Package buildinfo owns what a logferry binary says about its own build:
// the version and build date the Makefile sets at link time, and the
// revision and Go version the Go toolchain records (runtime/debug), for
// --version, the start-up log and the logferry_build_info metric.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at link time by the Makefile:
//
//	-ldflags "-X github.com/logferry/logferry/shared/buildinfo.version=1.2.3
//	          -X github.com/logferry/logferry/shared/buildinfo.revision=<git commit>
//	          -X github.com/logferry/logferry/shared/buildinfo.date=2026-12-06T12:00:00Z"
//
// A plain go build leaves them empty: the version is then "dev", and the
// revision and date what the toolchain recorded (with -buildvcs), else
// "unknown".
var (
	version  string
	revision string
	date     string
)

// Info is one binary's build.
type Info struct {
	Version   string // x.y.z from the Makefile, or "dev"
	Revision  string // the VCS revision Go recorded, "+dirty" when modified; "unknown" without
	BuildDate string // the Makefile's date, else the revision's commit time; "unknown" without
	GoVersion string
}

// Read returns this binary's Info.
func Read() Info {
	i := Info{Version: version, Revision: revision, BuildDate: date, GoVersion: runtime.Version()}
	if i.Version == "" {
		i.Version = "dev"
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, vcsTime string
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				vcsTime = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if rev != "" && i.Revision == "" {
			i.Revision = rev
			if modified {
				i.Revision += "+dirty"
			}
		}
		if i.BuildDate == "" {
			i.BuildDate = vcsTime
		}
		if i.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version // go install module@version
		}
	}
	if i.BuildDate == "" {
		i.BuildDate = "unknown"
	}
	if i.Revision == "" {
		i.Revision = "unknown"
	}
	return i
}

// String is the --version line of the binary named name.
func (i Info) String(name string) string {
	return fmt.Sprintf("%s %s (revision %s, built %s, %s)", name, i.Version, i.Revision, i.BuildDate, i.GoVersion)
}

// Register adds logferry_build_info{version,revision,goversion} = 1 to reg.
func (i Info) Register(reg prometheus.Registerer) {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "logferry_build_info",
		Help: "Always 1; the labels say which build of logferry runs.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(i.Version, i.Revision, i.GoVersion).Set(1)
	reg.MustRegister(g)
}

// Asked reports whether args ask for the version (-version or --version).
func Asked(args []string) bool {
	for _, a := range args {
		if a == "-version" || a == "--version" {
			return true
		}
	}
	return false
}
