package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat (100 on Linux).
const clockTicks = 100

// cpuSeconds returns the CPU time (user + system) used so far by this process (the bench's
// client and the in-process SCIM server, "bench") and by each of its children (etcd,
// kube-apiserver, kube-controller-manager, the operator), by command name.
func cpuSeconds() map[string]float64 {
	self := os.Getpid()
	out := map[string]float64{}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, path := range stats {
		data, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		s := string(data)
		open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(s[closing+1:])
		if len(fields) < 13 {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(s[:open]))
		ppid, _ := strconv.Atoi(fields[1])
		name := s[open+1 : closing]
		switch {
		case pid == self:
			name = "bench"
		case ppid != self:
			continue
		}
		utime, _ := strconv.ParseFloat(fields[11], 64)
		stime, _ := strconv.ParseFloat(fields[12], 64)
		out[name] += (utime + stime) / clockTicks
	}
	return out
}

// addCPU records, per process, the CPU seconds used between two cpuSeconds samples.
func (b *bench) addCPU(phase string, before, after map[string]float64, wall float64) {
	names := make([]string, 0, len(after))
	for name := range after {
		names = append(names, name)
	}
	sort.Strings(names)
	total := 0.0
	for _, name := range names {
		d := after[name] - before[name]
		total += d
		b.res.add(fmt.Sprintf("  CPU during %s: %s", phase, name), d, "s", "")
	}
	b.res.add(fmt.Sprintf("  CPU during %s: all (of %.1f s on %d cores)", phase, wall, runtime.NumCPU()), total, "s", "")
}
