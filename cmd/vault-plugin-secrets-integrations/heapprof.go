//go:build heapprof

package main

// Heap profiles of the real plugin process, for finding what the engine keeps (see
// docs/ARCHITECTURE.md, "Memory"). Only a binary built with `-tags heapprof` (make
// build-heapprof) has this file; a release build has no profiling code at all.
//
// With INTEGRATIONS_HEAPPROF_DIR set in the plugin's environment (vault plugin register
// -env), the process writes, on each SIGUSR1, a heap profile heap-<pid>-<n>.pprof (after a
// garbage collection, so in-use figures are live objects) and a memstats-<pid>-<n>.txt of
// runtime.MemStats beside it, into that directory. SIGUSR2 returns freed heap to the
// operating system (debug.FreeOSMemory) first, then writes the same pair, so a reader
// can tell heap the runtime keeps from heap that is live.

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
)

func init() {
	dir := os.Getenv("INTEGRATIONS_HEAPPROF_DIR")
	if dir == "" {
		return
	}
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		n := 0
		for sig := range ch {
			n++
			if sig == syscall.SIGUSR2 {
				debug.FreeOSMemory()
			}
			writeHeapProfile(dir, n)
		}
	}()
}

func writeHeapProfile(dir string, n int) {
	runtime.GC()
	f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d-%d.pprof", os.Getpid(), n)))
	if err != nil {
		return
	}
	_ = pprof.Lookup("heap").WriteTo(f, 0)
	_ = f.Close()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	txt := fmt.Sprintf("HeapAlloc %d\nHeapInuse %d\nHeapIdle %d\nHeapReleased %d\nHeapSys %d\nSys %d\nStackInuse %d\nNumGC %d\nHeapObjects %d\n",
		m.HeapAlloc, m.HeapInuse, m.HeapIdle, m.HeapReleased, m.HeapSys, m.Sys, m.StackInuse, m.NumGC, m.HeapObjects)
	_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("memstats-%d-%d.txt", os.Getpid(), n)), []byte(txt), 0o644)
}
