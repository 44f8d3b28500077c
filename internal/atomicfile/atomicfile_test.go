package atomicfile

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Write replaces the file whole with the given mode, concurrent writers leave one of their
// contents and no temporary file, and a failed write leaves the old file.
func TestWrite(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cluster.json")
	if err := Write(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "new" {
		t.Fatalf("read %q, %v", b, err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}

	var wg sync.WaitGroup
	var contents [][]byte
	for i := range 8 {
		c := bytes.Repeat([]byte(fmt.Sprint(i)), 4096)
		contents = append(contents, c)
		wg.Go(func() {
			if err := Write(path, c, 0o600); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range contents {
		found = found || bytes.Equal(b, c)
	}
	if !found {
		t.Fatalf("after concurrent writes the file is none of them (%d bytes)", len(b))
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("directory holds %d entries, want only cluster.json: %v", len(entries), entries)
	}

	// A write that cannot happen (its directory is gone) fails and leaves nothing.
	if err := Write(filepath.Join(dir, "missing", "x"), []byte("y"), 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
	if b, _ := os.ReadFile(path); len(b) != 4096 {
		t.Fatal("a failed write touched another file")
	}
}
