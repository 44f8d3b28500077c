package main

// Memory: the Go heap of this process, and the peak resident memory of a process as Linux
// keeps it (VmHWM), which can be set back to the current size before each change.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
)

// heapInuse is the Go heap in use by the whole process (etcd, every node and the harness) after
// a garbage collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// readPeakRSS returns the peak resident set size of process pid ("self" for this one), from
// VmHWM in /proc/<pid>/status: the peak since the process started or since resetPeakRSS.
func readPeakRSS(pid string) (int64, error) {
	b, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, err
	}
	lines := bufio.NewScanner(bytes.NewReader(b))
	for lines.Scan() {
		v, ok := strings.CutPrefix(lines.Text(), "VmHWM:")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%s/status: VmHWM %q: %w", pid, v, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("/proc/%s/status has no VmHWM", pid)
}

// resetPeakRSS sets the peak resident set size of process pid back to its current one
// (Linux 4.0 and later: "5" to /proc/<pid>/clear_refs).
func resetPeakRSS(pid string) error {
	return os.WriteFile("/proc/"+pid+"/clear_refs", []byte("5"), 0)
}

// writeHeapProfile writes a heap profile of this process to path.
func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("heap profile: %w", err)
	}
	return f.Close()
}
