package soak

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// dockerdHung is called when docker wait outlived a container's life by
// minutes: dockerd did not report an exit it should have. Once per run it
// asks dockerd for its goroutine stacks (SIGUSR1: dockerd writes them to a
// goroutine-stacks-*.log file and says where in its log) and copies them
// and dockerd's log into the report directory, which outlives dockerd's.
// A 30-minute soak of 2026-12-07 (Debian's dockerd 20.10.24) saw every
// container that ended at the run's end stay "Up" for minutes after its
// process had exited, and docker wait, rm and logs hang, with all their
// lines already in Loki; this keeps what is needed to tell why.
func (e *env) dockerdHung(why string) {
	e.hangOnce.Do(func() {
		e.logf("dockerd did not report an exit (%s): saving its goroutine stacks and log in %s", why, e.cfg.OutDir)
		raw, err := os.ReadFile(filepath.Join(e.d.Dir(), "dockerd.pid"))
		if err != nil {
			e.logf("dockerd's pid: %v", err)
			return
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
		if err != nil {
			e.logf("dockerd's pid: %v", err)
			return
		}
		if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
			e.logf("SIGUSR1 to dockerd %d: %v", pid, err)
			return
		}
		time.Sleep(2 * time.Second) // dockerd writes the dump asynchronously
		e.saveDockerdFiles()
	})
}

// saveDockerdFiles copies dockerd's log and its stack dumps into OutDir.
func (e *env) saveDockerdFiles() {
	_ = filepath.WalkDir(e.d.Dir(), func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // a container's directory went away meanwhile
		}
		if d.IsDir() && path != e.d.Dir() && (d.Name() == "containers" || d.Name() == "overlay2" || d.Name() == "rootfs" || d.Name() == "image") {
			return fs.SkipDir
		}
		name := d.Name()
		if d.Type().IsRegular() && (name == "dockerd.log" || strings.HasPrefix(name, "goroutine-stacks-")) {
			if !strings.HasPrefix(name, "dockerd") {
				name = "dockerd-" + name
			}
			if err := copyFile(path, filepath.Join(e.cfg.OutDir, name)); err != nil {
				e.logf("saving %s: %v", path, err)
			}
		}
		return nil
	})
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
