package clusterkit

import (
	"crypto/md5"
	"encoding/binary"
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// partitionIndex is the wire contract every client follows: the big-endian uint32 of the first
// four bytes of md5(key), modulo the partition count.
func partitionIndex(key string, partitionCount int) int {
	return int(keyHash(key) % uint32(partitionCount))
}

// keyHash is the big-endian uint32 of the first four bytes of md5(key).
func keyHash(key string) uint32 {
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

// modulo computes x mod d with two multiplications instead of a division (Lemire, Kaser and
// Kurz, "Faster Remainder by Direct Computation", 2019): exact for every 32-bit x and d.
type modulo struct {
	d uint64
	m uint64
}

func newModulo(d int) modulo {
	return modulo{d: uint64(d), m: ^uint64(0)/uint64(d) + 1}
}

func (f modulo) of(x uint32) int {
	hi, _ := bits.Mul64(f.m*uint64(x), f.d)
	return int(hi)
}

// PartitionID returns the ID of partition index i.
func PartitionID(i int) string { return "partition-" + strconv.Itoa(i) }

// parsePartitionID returns the index in "partition-<n>", checking it against the count.
func parsePartitionID(id string, partitionCount int) (int, error) {
	s, ok := strings.CutPrefix(id, "partition-")
	if !ok {
		return 0, fmt.Errorf("%w: %q is not of the form partition-<n>", ErrUnknownPartition, id)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n >= partitionCount || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("%w: %q (the cluster has partition-0 to partition-%d)", ErrUnknownPartition, id, partitionCount-1)
	}
	return n, nil
}
