package rebalance

import (
	"math/big"
	"math/bits"
	"slices"
)

// share is an exact fair share of slots, split into its integer part and whether a fractional part
// remains; rank is that fractional part as a float, used only to order who gets the remainders.
type share struct {
	floor int64
	frac  bool
	rank  float64
}

// ratioShare returns the exact share t·w/W. w ≤ W, so the quotient fits in 64 bits.
func ratioShare(t, w, W uint64) share {
	hi, lo := bits.Mul64(t, w)
	q, rem := bits.Div64(hi, lo, W)
	return share{floor: int64(q), frac: rem != 0, rank: float64(rem) / float64(W)}
}

// mulLE reports whether a·b ≤ c·d without overflow.
func mulLE(a, b, c, d uint64) bool {
	h1, l1 := bits.Mul64(a, b)
	h2, l2 := bits.Mul64(c, d)
	return h1 < h2 || (h1 == h2 && l1 <= l2)
}

func ratShare(x *big.Rat) share {
	q, r := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int))
	rank, _ := new(big.Rat).SetFrac(r, x.Denom()).Float64()
	return share{floor: q.Int64(), frac: r.Sign() != 0, rank: rank}
}

// waterFill returns x_i = clamp(λ·w_i, lo_i, hi_i) with Σx_i = total: the weighted fair split of total
// when every item has bounds. It needs Σlo ≤ total ≤ Σhi and w_i ≥ 1. Each round fixes the items that
// violate a bound on the side the solution lies, so it ends within len(w) rounds, and in one round
// when no bound binds.
func waterFill(w, lo, hi []int64, total *big.Rat) []*big.Rat {
	n := len(w)
	const (
		free = iota
		atLo
		atHi
	)
	state := make([]int, n)
	lambda := new(big.Rat)
	x := new(big.Rat)
	for {
		rest := new(big.Rat).Set(total)
		var wFree int64
		for i := range n {
			switch state[i] {
			case atLo:
				rest.Sub(rest, new(big.Rat).SetInt64(lo[i]))
			case atHi:
				rest.Sub(rest, new(big.Rat).SetInt64(hi[i]))
			default:
				wFree += w[i]
			}
		}
		if wFree == 0 {
			break
		}
		lambda.Quo(rest, new(big.Rat).SetInt64(wFree))
		over, under := new(big.Rat), new(big.Rat)
		var overs, unders []int
		for i := range n {
			if state[i] != free {
				continue
			}
			x.Mul(lambda, new(big.Rat).SetInt64(w[i]))
			if b := new(big.Rat).SetInt64(hi[i]); x.Cmp(b) > 0 {
				over.Add(over, b.Sub(x, b))
				overs = append(overs, i)
			} else if b := new(big.Rat).SetInt64(lo[i]); x.Cmp(b) < 0 {
				under.Add(under, b.Sub(b, x))
				unders = append(unders, i)
			}
		}
		if len(overs) == 0 && len(unders) == 0 {
			break
		}
		c := over.Cmp(under)
		if c >= 0 {
			for _, i := range overs {
				state[i] = atHi
			}
		}
		if c <= 0 {
			for _, i := range unders {
				state[i] = atLo
			}
		}
	}
	out := make([]*big.Rat, n)
	for i := range n {
		switch state[i] {
		case atLo:
			out[i] = new(big.Rat).SetInt64(lo[i])
		case atHi:
			out[i] = new(big.Rat).SetInt64(hi[i])
		default:
			out[i] = new(big.Rat).Mul(lambda, new(big.Rat).SetInt64(w[i]))
		}
	}
	return out
}

// apportion rounds shares to integers q_i ∈ {floor_i, floor_i+1} with Σq_i = total (which must lie
// between Σfloor and Σceil). The +1s go first to items with a higher level (the caller's way to say
// "this one already has it, so giving it there moves nothing"), then to larger fractional parts, then
// by hash, so the result does not depend on the order of the items.
func apportion(sh []share, total int64, level []int, hash []uint64) []int64 {
	q := make([]int64, len(sh))
	var cand []int
	for i, s := range sh {
		q[i] = s.floor
		total -= s.floor
		if s.frac {
			cand = append(cand, i)
		}
	}
	if total <= 0 {
		return q
	}
	slices.SortFunc(cand, func(a, b int) int {
		if level[a] != level[b] {
			return level[b] - level[a]
		}
		if sh[a].rank != sh[b].rank {
			if sh[a].rank > sh[b].rank {
				return -1
			}
			return 1
		}
		if hash[a] != hash[b] {
			if hash[a] < hash[b] {
				return -1
			}
			return 1
		}
		return a - b
	})
	for _, i := range cand[:total] {
		q[i]++
	}
	return q
}
