package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports (the kernel exports no other
// value to user space).
const clockTick = 10 * time.Millisecond

// ProcCPU returns the CPU time (user + system, every thread) process pid
// has used so far, from /proc/<pid>/stat.
func ProcCPU(pid int) (user, system time.Duration, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime, fields 14 and 15 of /proc/<pid>/stat.
// The command name (field 2) is in parentheses and may hold spaces, so the
// fields are counted after its closing parenthesis.
func parseStatCPU(b []byte) (user, system time.Duration, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc stat: no command name in %q", b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state): utime is field 14, f[11].
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("/proc stat: %d fields after the command name", len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("/proc stat: utime %q stime %q", f[11], f[12])
	}
	return time.Duration(u) * clockTick, time.Duration(s) * clockTick, nil
}

// ProcMem is what /proc/<pid>/status says about a process's memory.
type ProcMem struct {
	RSS     int64 // VmRSS, bytes
	PeakRSS int64 // VmHWM, bytes
	Threads int
}

// ReadProcMem reads /proc/<pid>/status.
func ReadProcMem(pid int) (ProcMem, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcMem{}, err
	}
	return parseStatus(b)
}

func parseStatus(b []byte) (ProcMem, error) {
	var m ProcMem
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "VmRSS":
			m.RSS = n << 10 // kB
			found++
		case "VmHWM":
			m.PeakRSS = n << 10
			found++
		case "Threads":
			m.Threads = int(n)
			found++
		}
	}
	if found < 3 {
		return m, fmt.Errorf("/proc status: VmRSS, VmHWM or Threads missing")
	}
	return m, nil
}

// MiB converts bytes to MiB.
func MiB(n int64) float64 { return float64(n) / (1 << 20) }

// ProcIO is the read and write system calls a process (every thread) has
// made so far, from /proc/<pid>/io.
type ProcIO struct {
	ReadCalls, WriteCalls int64 // syscr, syscw
}

// ReadProcIO reads /proc/<pid>/io (root, or the process's owner).
func ReadProcIO(pid int) (ProcIO, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return ProcIO{}, err
	}
	return parseIO(b)
}

func parseIO(b []byte) (ProcIO, error) {
	var io ProcIO
	found := 0
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "syscr":
			io.ReadCalls = n
			found++
		case "syscw":
			io.WriteCalls = n
			found++
		}
	}
	if found < 2 {
		return io, fmt.Errorf("/proc io: syscr or syscw missing")
	}
	return io, nil
}
