package rebalance

import (
	"crypto/md5"
	"encoding/binary"
	"slices"
	"strconv"
)

// The baselines the benchmarks compare against. Each returns a placement for the nodes from scratch:
// none of them looks at the previous map, which is how they are used.

func partitionID(p int) string { return "partition-" + strconv.Itoa(p) }

// rendezvousMap is placement as the original ClusterKit did it: for each partition, score every
// node with the big-endian uint32 of the first four bytes of md5(partitionID + nodeID); the lowest
// score is primary, the next R-1 are replicas (ties by ID).
func rendezvousMap(nodes []Node, cfg Config) Map {
	r := min(cfg.ReplicationFactor, len(nodes))
	m := make(Map, cfg.Partitions)
	type scored struct {
		score uint32
		id    string
	}
	less := func(a, b scored) bool { return a.score < b.score || (a.score == b.score && a.id < b.id) }
	var buf []byte
	top := make([]scored, 0, r+1)
	for p := range m {
		pid := partitionID(p)
		top = top[:0]
		for _, n := range nodes {
			buf = append(append(buf[:0], pid...), n.ID...)
			sum := md5.Sum(buf)
			c := scored{binary.BigEndian.Uint32(sum[:4]), n.ID}
			if len(top) == r && !less(c, top[r-1]) {
				continue
			}
			k := len(top)
			if k == r {
				k--
			} else {
				top = append(top, c)
			}
			for k > 0 && less(c, top[k-1]) {
				top[k] = top[k-1]
				k--
			}
			top[k] = c
		}
		for _, c := range top {
			m[p] = append(m[p], c.id)
		}
	}
	return m
}

// ringMap is a consistent-hash ring with v virtual nodes per node: a partition goes to the first
// r distinct nodes clockwise from its hash.
func ringMap(nodes []Node, cfg Config, v int) Map {
	type point struct {
		hash uint64
		node int32
	}
	ring := make([]point, 0, len(nodes)*v)
	var buf []byte
	for i, n := range nodes {
		for k := range v {
			buf = strconv.AppendInt(append(append(buf[:0], n.ID...), '#'), int64(k), 10)
			sum := md5.Sum(buf)
			ring = append(ring, point{binary.BigEndian.Uint64(sum[:8]), int32(i)})
		}
	}
	slices.SortFunc(ring, func(a, b point) int {
		if a.hash != b.hash {
			if a.hash < b.hash {
				return -1
			}
			return 1
		}
		return int(a.node - b.node)
	})
	r := min(cfg.ReplicationFactor, len(nodes))
	m := make(Map, cfg.Partitions)
	for p := range m {
		sum := md5.Sum([]byte(partitionID(p)))
		h := binary.BigEndian.Uint64(sum[:8])
		k, _ := slices.BinarySearchFunc(ring, h, func(a point, h uint64) int {
			if a.hash < h {
				return -1
			}
			if a.hash > h {
				return 1
			}
			return 0
		})
		for len(m[p]) < r {
			id := nodes[ring[k%len(ring)].node].ID
			if !slices.Contains(m[p], id) {
				m[p] = append(m[p], id)
			}
			k++
		}
	}
	return m
}

// jumpMap is jump consistent hashing (Lamping and Veach) over the nodes in the order given: the
// primary is jump(hash(partition), N), each further replica jumps on a rehashed key until r
// distinct nodes are found. Jump hash only handles removing the last bucket well; any other node
// leaving shifts the buckets after it, which the leave figures show.
func jumpMap(nodes []Node, cfg Config) Map {
	r := min(cfg.ReplicationFactor, len(nodes))
	m := make(Map, cfg.Partitions)
	for p := range m {
		sum := md5.Sum([]byte(partitionID(p)))
		key := binary.BigEndian.Uint64(sum[:8])
		for k := uint64(0); len(m[p]) < r; k++ {
			id := nodes[jump(mix(key+k*0x9e3779b97f4a7c15), len(nodes))].ID
			if !slices.Contains(m[p], id) {
				m[p] = append(m[p], id)
			}
		}
	}
	return m
}

func jump(key uint64, buckets int) int {
	b, j := int64(-1), int64(0)
	for j < int64(buckets) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}
