package store

import "fmt"

// Sizes. A value is limited by Options.MaxValueBytes, a key by MaxKeyBytes; every request body
// is limited by what the largest legal request takes, worked out from those two (bodyLimit),
// and a node that sends several entries in one request (the Async queue, an adoption) cuts
// them into requests that fit (batchBudget). An export, a whole partition, is not one request
// body: it is streamed, entry by entry (see handleExport), whatever its size.
const (
	// DefaultMaxValueBytes is the default of Options.MaxValueBytes: 1 MiB.
	DefaultMaxValueBytes = 1 << 20
	// MaxMaxValueBytes is the largest Options.MaxValueBytes accepted: 16 MiB. Larger values
	// belong in a blob store, with their address in this one.
	MaxMaxValueBytes = 16 << 20
	// MaxKeyBytes bounds a key: 4 KiB.
	MaxKeyBytes = 4 << 10

	// jsonExpansion is the most bytes encoding/json spells one byte of a string in: a control
	// character, or '<', '>' and '&', which it escapes for HTML, become \u00XX.
	jsonExpansion = 6
	// entryOverhead bounds an Entry's JSON besides its key and value: the field names, quotes
	// and a version of two 20-digit numbers.
	entryOverhead = 128
	// requestOverhead bounds a request's JSON besides its entries: partition, epochs, sender,
	// and the quorum example's list of target node IDs.
	requestOverhead = 64 << 10
)

// entryCost bounds the JSON size of e, whatever its bytes.
func entryCost(e Entry) int {
	return jsonExpansion*(len(e.Key)+len(e.Value)) + entryOverhead
}

// batchBudget is how much entryCost one request's entries may add up to: one entry of the
// largest size, or many small ones (up to maxBatch).
func batchBudget(maxValue int) int {
	return jsonExpansion*(MaxKeyBytes+maxValue) + entryOverhead
}

// bodyLimit bounds a request body: a batch within batchBudget and the request's other fields.
// At the default 1 MiB value it is about 6.1 MiB; a 1 MiB value whose every byte JSON must
// escape still fits, and the value itself is then checked against maxValue.
func bodyLimit(maxValue int) int64 {
	return int64(batchBudget(maxValue) + requestOverhead)
}

// maxAnswer bounds an answer read by Call: one entry of the largest size a node may be
// configured with, and the answer's other fields.
const maxAnswer = jsonExpansion*(MaxKeyBytes+MaxMaxValueBytes) + entryOverhead + requestOverhead

// checkSize refuses a key or value over its limit with ErrTooLarge.
func checkSize(key, value string, maxValue int) error {
	if len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: key of %d bytes, over the limit of %d bytes", ErrTooLarge, len(key), MaxKeyBytes)
	}
	if len(value) > maxValue {
		return fmt.Errorf("%w: value of %d bytes, over the limit of %d bytes (max value bytes)", ErrTooLarge, len(value), maxValue)
	}
	return nil
}
