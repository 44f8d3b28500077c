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
	// fuzzTimeEnv names the variable that turns fuzzing on and says for how long each target
	// is fuzzed ("2s"). Off by default: on a cold build cache the instrumented builds alone take
	// about 4 minutes on 2 cores, more than the rest of the suite can spare.
	fuzzTimeEnv = "CLUSTERKIT_FUZZTIME"
	// budget bounds each target's run, the instrumented build of its package included. The
	// first build on a cold cache compiles etcd's server instrumented (every package here
	// links one into its tests): 2m24s of the first target's run on 2 cores; later targets
	// take about 5s each.
	budget = 5 * time.Minute
	// binaryTimeout bounds the fuzzing binary itself, so that it ends on its own, workers and
	// all, before budget kills the go command.
	binaryTimeout = 2 * time.Minute
)

// Each target, fuzzed for fuzzTime, finds nothing.
func TestFuzzTargets(t *testing.T) {
	fuzzTime := os.Getenv(fuzzTimeEnv)
	if fuzzTime == "" {
		t.Skipf("set %s=2s to fuzz each target (go test runs their seeds either way)", fuzzTimeEnv)
	}
	if _, err := time.ParseDuration(fuzzTime); err != nil {
		t.Fatalf("%s=%q: %v", fuzzTimeEnv, fuzzTime, err)
	}
	if testing.Short() {
		t.Skip("fuzzing each target takes a few seconds; -short skips it")
	}
	goBin := goCommand(t)
	root := moduleRoot(t)
	for _, tt := range targets {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), budget)
			defer cancel()
			args := []string{"test", "-run", "^$", "-fuzz", "^" + tt.name + "$", "-fuzztime", fuzzTime, "-parallel", "2",
				"-timeout", binaryTimeout.String(), "./" + tt.pkg}
			cmd := exec.CommandContext(ctx, goBin, args...)
			cmd.Dir = root
			// A fuzzing binary left behind by a killed go command must not hold the output open.
			cmd.WaitDelay = 10 * time.Second
			start := time.Now()
			out, err := cmd.CombinedOutput()
			switch {
			case ctx.Err() != nil:
				t.Fatalf("go %s did not finish within %v:\n%s", strings.Join(args, " "), budget, out)
			case err != nil:
				t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			t.Logf("%s/%s: %v", tt.pkg, tt.name, time.Since(start).Round(time.Millisecond))
		})
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
