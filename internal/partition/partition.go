// Package partition is the key -> partition function, a wire contract shared by the nodes
// (pkg/clusterkit) and the clients (pkg/client): the big-endian uint32 of the first four bytes
// of md5(key), modulo the partition count, named "partition-<index>". It is also the one place
// that formats and parses those names.
package partition

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// Format is the printf format of partition IDs, as the cluster publishes it in its hash
// configuration.
const Format = prefix + "%d"

// prefix is what every partition ID starts with; the index follows it in decimal.
const prefix = "partition-"

// Hash is the big-endian uint32 of the first four bytes of md5(key). It allocates nothing.
func Hash(key string) uint32 {
	// Hash from a stack buffer for short keys: md5.Sum of []byte(key) would copy the key to
	// the heap when it is longer than the compiler's small conversion buffer.
	var buf [128]byte
	var sum [md5.Size]byte
	if len(key) <= len(buf) {
		sum = md5.Sum(append(buf[:0], key...))
	} else {
		sum = md5.Sum([]byte(key))
	}
	return binary.BigEndian.Uint32(sum[:4])
}

// Index returns the index of key's partition among count partitions (count > 0).
func Index(key string, count int) int {
	return int(Hash(key) % uint32(count))
}

// ID returns the ID of partition index i: "partition-<i>".
func ID(i int) string { return prefix + strconv.Itoa(i) }

// Parse returns the index of the partition named id among count partitions. It accepts only
// what ID returns: no sign, no leading zeros, no index outside [0, count).
func Parse(id string, count int) (int, error) {
	s, ok := strings.CutPrefix(id, prefix)
	if !ok {
		return 0, fmt.Errorf("%q is not of the form %s<n>", id, prefix)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= count || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%q (the cluster has %s to %s)", id, ID(0), ID(count-1))
	}
	return n, nil
}

// Modulo computes x mod d with two multiplications instead of a division (Lemire, Kaser and
// Kurz, "Faster Remainder by Direct Computation", 2019): exact for every 32-bit x and d. The
// zero value is not usable; use NewModulo.
type Modulo struct {
	d uint64
	m uint64
}

// NewModulo returns the modulo by d, for 0 < d < 2^32.
func NewModulo(d int) Modulo {
	return Modulo{d: uint64(d), m: ^uint64(0)/uint64(d) + 1}
}

// Of returns x mod d.
func (f Modulo) Of(x uint32) int {
	hi, _ := bits.Mul64(f.m*uint64(x), f.d)
	return int(hi)
}
