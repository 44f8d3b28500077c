package partition

import (
	"fmt"
	"strings"
	"testing"
)

// The key -> partition hash is a wire contract: these vectors come from DESIGN.md.
func TestGoldenVectors(t *testing.T) {
	tests := []struct {
		key string
		p64 string
		p16 string
	}{
		{"user:123", "partition-48", "partition-0"},
		{"order:100", "partition-46", "partition-14"},
		{"product:abc", "partition-18", "partition-2"},
		{"test-key", "partition-49", "partition-1"},
	}
	for _, tt := range tests {
		if got := ID(Index(tt.key, 64)); got != tt.p64 {
			t.Errorf("%q with 64 partitions: got %s, want %s", tt.key, got, tt.p64)
		}
		if got := ID(Index(tt.key, 16)); got != tt.p16 {
			t.Errorf("%q with 16 partitions: got %s, want %s", tt.key, got, tt.p16)
		}
		if got := ID(NewModulo(64).Of(Hash(tt.key))); got != tt.p64 {
			t.Errorf("%q through Modulo: got %s, want %s", tt.key, got, tt.p64)
		}
	}
}

// The division-free modulo agrees with %.
func TestModulo(t *testing.T) {
	for _, d := range []int{1, 2, 3, 7, 16, 64, 1000, 4096, 65535, 65536} {
		m := NewModulo(d)
		for _, x := range []uint32{0, 1, 2, 63, 64, 65, 1 << 31, 0xfffffffe, 0xffffffff, 123456789} {
			if got, want := m.Of(x), int(x%uint32(d)); got != want {
				t.Fatalf("%d mod %d: got %d, want %d", x, d, got, want)
			}
		}
	}
}

// Keys longer than the stack buffer hash the same way as short ones, and hashing allocates
// nothing for short keys.
func TestHash(t *testing.T) {
	long := strings.Repeat("k", 1000)
	if Index(long, 64) != Index(string([]byte(long)), 64) {
		t.Fatal("long key hashed inconsistently")
	}
	key := strings.Repeat("x", 100)
	if n := testing.AllocsPerRun(100, func() { _ = Hash(key) }); n != 0 {
		t.Fatalf("Hash of a 100-byte key allocates %v times", n)
	}
}

// Parse takes back exactly what ID gives, and names what is wrong with anything else.
func TestParse(t *testing.T) {
	for _, i := range []int{0, 1, 9, 10, 63} {
		if got, err := Parse(ID(i), 64); err != nil || got != i {
			t.Errorf("Parse(%q, 64) = %d, %v; want %d", ID(i), got, err, i)
		}
	}
	tests := []struct {
		id   string
		want string
	}{
		{"p-1", `"p-1" is not of the form partition-<n>`},
		{"partition-", `"partition-" (the cluster has partition-0 to partition-63)`},
		{"partition-64", `"partition-64" (the cluster has partition-0 to partition-63)`},
		{"partition--1", `"partition--1" (the cluster has partition-0 to partition-63)`},
		{"partition-+1", `"partition-+1" (the cluster has partition-0 to partition-63)`},
		{"partition-01", `"partition-01" (the cluster has partition-0 to partition-63)`},
		{"partition-1x", `"partition-1x" (the cluster has partition-0 to partition-63)`},
	}
	for _, tt := range tests {
		if _, err := Parse(tt.id, 64); err == nil || err.Error() != tt.want {
			t.Errorf("Parse(%q, 64): %v, want %s", tt.id, err, tt.want)
		}
	}
	if fmt.Sprintf(Format, 7) != ID(7) {
		t.Errorf("Format %q does not print %s", Format, ID(7))
	}
}
