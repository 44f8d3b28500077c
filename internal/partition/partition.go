// Package partition is the key -> partition function, a wire contract shared by the nodes
// (pkg/clusterkit) and the clients (pkg/client): the big-endian uint32 of the first four bytes
// of md5(key), modulo the partition count, named "partition-<index>".
package partition

import (
	"crypto/md5"
	"encoding/binary"
	"math/bits"
	"strconv"
)

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
func ID(i int) string { return "partition-" + strconv.Itoa(i) }

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
