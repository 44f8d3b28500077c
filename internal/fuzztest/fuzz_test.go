package fuzztest

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// targets are the module's fuzz targets: the package, relative to the module root, and the
// target. TestTargetsListed fails when one is missing.
var targets = []struct {
	pkg  string
	name string
}{
	{"internal/state", "FuzzDecodeHead"},
	{"internal/state", "FuzzDecodeEntries"},
	{"internal/state", "FuzzDecodePiece"},
	{"internal/state", "FuzzDecodeChunk"},
	{"internal/state", "FuzzReadMap"},
	{"internal/state", "FuzzValidateChange"},
	{"internal/state", "FuzzDecodeNode"},
	{"internal/state", "FuzzDecodeHeld"},
	{"internal/state", "FuzzDecodeAcks"},
	{"internal/state", "FuzzRanges"},
	{"internal/state", "FuzzConfig"},
	{"internal/topology", "FuzzFromCluster"},
	{"internal/topology", "FuzzFromDelta"},
	{"internal/topology", "FuzzFromStateMap"},
	{"internal/joininfo", "FuzzJoinInfo"},
}

const (
	// fuzzTimeEnv names the variable that says how long each target is fuzzed ("5s"; "0" turns
	// fuzzing off), defaultFuzzTime when it is not set.
	fuzzTimeEnv     = "CLUSTERKIT_FUZZTIME"
	defaultFuzzTime = time.Second
	// buildBudget bounds what a target's go test does besides fuzzing: building its package's
	// test binary instrumented for fuzzing (on a cold build cache the first target of each
	// package compiles the standard library packages it uses, instrumented), running its seeds
	// and stopping its workers.
	buildBudget = 3 * time.Minute
	// binarySlack is added to the fuzz time to bound the fuzzing binary itself, so that it ends
	// on its own, workers and all, before the go command running it is killed.
	binarySlack = time.Minute
)

// unlinked are the packages no fuzzed package may link: the etcd client and what it brings.
// Instrumenting them for fuzzing took minutes per package on a cold build cache.
var unlinked = []string{"go.etcd.io/etcd/", "google.golang.org/grpc", "google.golang.org/protobuf", "go.uber.org/zap"}

// fuzzTime is how long each target is fuzzed: defaultFuzzTime, or what fuzzTimeEnv says.
func fuzzTime(t *testing.T) time.Duration {
	t.Helper()
	v, ok := os.LookupEnv(fuzzTimeEnv)
	if !ok || v == "" {
		return defaultFuzzTime
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		t.Fatalf("%s=%q is not a duration such as 2s", fuzzTimeEnv, v)
	}
	return d
}

// Each target, fuzzed for fuzzTime, finds nothing.
func TestFuzzTargets(t *testing.T) {
	if testing.Short() {
		t.Skip("fuzzing takes a few seconds a target; -short skips it (go test runs their seeds either way)")
	}
	fuzz := fuzzTime(t)
	if fuzz == 0 {
		t.Skipf("%s=0: not fuzzing (go test runs the targets' seeds either way)", fuzzTimeEnv)
	}
	goBin := goCommand(t)
	root := moduleRoot(t)
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			deadline := start.Add(buildBudget + fuzz + binarySlack)
			if d, ok := t.Deadline(); ok && d.Add(-10*time.Second).Before(deadline) {
				// Fail with the output of the go command rather than let the test binary's
				// timeout kill everything.
				deadline = d.Add(-10 * time.Second)
			}
			ctx, cancel := context.WithDeadline(t.Context(), deadline)
			defer cancel()
			args := []string{"test", "-run", "^$", "-fuzz", "^" + tt.name + "$", "-fuzztime", fuzz.String(), "-parallel", "1",
				"-timeout", (fuzz + binarySlack).String(), "./" + tt.pkg}
			cmd := exec.CommandContext(ctx, goBin, args...)
			cmd.Dir = root
			// A fuzzing binary left behind by a killed go command must not hold the output open;
			// it ends by its own -timeout.
			cmd.WaitDelay = 10 * time.Second
			out, err := cmd.CombinedOutput()
			switch {
			case ctx.Err() != nil:
				t.Fatalf("go %s did not finish within %v:\n%s", strings.Join(args, " "), deadline.Sub(start).Round(time.Second), out)
			case err != nil:
				t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			t.Logf("%s/%s: %v", tt.pkg, tt.name, time.Since(start).Round(time.Millisecond))
		})
	}
}

// No fuzzed package links the etcd client, in its tests either: instrumented for fuzzing, the
// client and grpc took minutes to build on a cold cache, more than the test command can spare.
func TestTargetsLinkNoEtcd(t *testing.T) {
	goBin := goCommand(t)
	root := moduleRoot(t)
	var pkgs []string
	for _, tt := range targets {
		if !slices.Contains(pkgs, "./"+tt.pkg) {
			pkgs = append(pkgs, "./"+tt.pkg)
		}
	}
	for _, pkg := range pkgs {
		cmd := exec.Command(goBin, "list", "-deps", "-test", pkg)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list -deps -test %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, u := range unlinked {
				if strings.HasPrefix(dep, u) {
					t.Errorf("%s links %s into its tests", pkg, dep)
				}
			}
		}
	}
}

// fuzzFunc matches the declaration of a fuzz target.
var fuzzFunc = regexp.MustCompile(`(?m)^func (Fuzz\w*)\(\s*\w+\s+\*testing\.F\s*\)`)

// The table lists every fuzz target of the module, and nothing else.
func TestTargetsListed(t *testing.T) {
	root := moduleRoot(t)
	var found []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); path != root && err == nil {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, m := range fuzzFunc.FindAllSubmatch(src, -1) {
			found = append(found, filepath.ToSlash(rel)+" "+string(m[1]))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, tt := range targets {
		listed = append(listed, tt.pkg+" "+tt.name)
	}
	for _, f := range found {
		if !slices.Contains(listed, f) {
			t.Errorf("fuzz target %s is not in the table of internal/fuzztest", f)
		}
	}
	for _, l := range listed {
		if !slices.Contains(found, l) {
			t.Errorf("the table of internal/fuzztest lists %s, which does not exist", l)
		}
	}
	if len(found) == 0 {
		t.Fatalf("no fuzz target found under %s", root)
	}
}

// goCommand is the go command of the toolchain that built the test, or the one on the PATH.
func goCommand(t *testing.T) string {
	t.Helper()
	if goroot := runtime.GOROOT(); goroot != "" {
		p := filepath.Join(goroot, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command: %v", err)
	}
	return p
}

// moduleRoot is the directory of the module's go.mod, above the test's working directory.
func moduleRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
