package state

import (
	"encoding/json"
	"testing"
)

// The chunks of a 65536-partition map of 10 nodes in the compact form against the same entries
// as JSON objects (the form before it), decoded: the read every new node and every reader after
// a checkpoint makes.
func BenchmarkDecodeCheckpoint(b *testing.B) {
	m := bigMap(65536, 10)
	chunks, _, err := encodeChunks(m.Epoch, m.Partitions, MaxValue)
	if err != nil {
		b.Fatal(err)
	}
	plain, err := json.Marshal(m.Partitions)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("compact", func(b *testing.B) {
		for b.Loop() {
			for _, c := range chunks {
				if _, err := decodeChunk(c); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.Run("objects", func(b *testing.B) {
		for b.Loop() {
			if _, err := DecodeEntries(plain); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode-compact", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := encodeChunks(m.Epoch, m.Partitions, MaxValue); err != nil {
				b.Fatal(err)
			}
		}
	})
}
