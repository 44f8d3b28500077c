package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/clusterkit"
)

const testToken = "test-token-0123456789abcdef"

// newTokenCluster is newTestCluster whose nodes require testToken, and whose client sends it.
func newTokenCluster(t *testing.T, mode Mode) *testCluster {
	c := newTestCluster(t, mode)
	c.token = testToken
	c.httpc = TokenClient(c.httpc, testToken)
	return c
}

// Every endpoint of a node with a token answers 401, naming the problem, to a request without
// it or with another one, and serves the request with it. An export refused so does not
// redirect the node's writes to the address it names.
func TestTokenRequired(t *testing.T) {
	c := newTokenCluster(t, Sync)
	n := c.start("node-1")
	c.kit.WaitConverged(30 * time.Second)
	p, err := n.ck.GetPartition("k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.put("k", "v"); err != nil {
		t.Fatal(err)
	}
	write := ReplicateRequest{Partition: p.ID, PrimaryEpoch: p.PrimaryEpoch, MapEpoch: p.Epoch, From: "test",
		Entries: []Entry{{Key: "k", Value: "v2", Version: Version{Epoch: p.PrimaryEpoch, Seq: 1}}}}
	export := "/store/export?" + url.Values{"partition": {p.ID}, "min_epoch": {"0"}, "node": {"node-9"}, "addr": {"127.0.0.1:1"}}.Encode()
	endpoints := []struct {
		name, method, path string
		body               any
	}{
		{"put", http.MethodPost, "/store/put", PutRequest{Key: "k", Value: "v"}},
		{"get", http.MethodGet, "/store/get?key=k", nil},
		{"replicate", http.MethodPost, "/store/replicate", write},
		{"adopt", http.MethodPost, "/store/adopt", write},
		{"export", http.MethodGet, export, nil},
		{"stats", http.MethodGet, "/store/stats", nil},
	}
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
	defer plain.CloseIdleConnections()
	refusals := []struct {
		name  string
		httpc *http.Client
		hdr   http.Header
		want  string
	}{
		{"no token", plain, nil, "no Authorization header"},
		{"wrong token", TokenClient(plain, "another-token-0123456789"), nil, "wrong token"},
		{"token one character short", TokenClient(plain, testToken[:len(testToken)-1]), nil, "wrong token"},
		{"basic scheme", plain, http.Header{"Authorization": {"Basic " + testToken}}, "not a Bearer token"},
	}
	for _, ep := range endpoints {
		for _, r := range refusals {
			t.Run(ep.name+"/"+r.name, func(t *testing.T) {
				err := Call(context.Background(), r.httpc, ep.method, n.addr, ep.path, r.hdr, ep.body, nil)
				var apiErr *APIError
				if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.Code != "unauthorized" ||
					!strings.Contains(apiErr.Message, r.want) {
					t.Errorf("answered %v, want 401 unauthorized mentioning %q", err, r.want)
				}
			})
		}
		t.Run(ep.name+"/right token", func(t *testing.T) {
			if err := Call(context.Background(), c.httpc, ep.method, n.addr, ep.path, nil, ep.body, nil); err != nil {
				t.Errorf("answered %v, want 200", err)
			}
		})
	}
	if got, _ := n.st.Local("k"); got.Value != "v" {
		t.Errorf("after the refused writes and the accepted ones k holds %+v, want the put's v", got)
	}
	n.st.learnAddr("node-9", "") // forget what the accepted export taught
	if err := Call(context.Background(), plain, http.MethodGet, n.addr, export, nil, nil, nil); !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("export without the token: %v, want unauthorized", err)
	}
	if addr := n.st.addrOf("node-9"); addr != "" {
		t.Errorf("an export refused for want of the token made the node learn %s at %s", "node-9", addr)
	}

	// The token is checked before the body is read: a body over every limit is refused with
	// 401, not 413.
	huge := PutRequest{Key: "k", Value: strings.Repeat("x", int(bodyLimit(DefaultMaxValueBytes))+1)}
	if err := Call(context.Background(), plain, http.MethodPost, n.addr, "/store/put", nil, huge, nil); !errors.Is(err, ErrUnauthorized) {
		t.Errorf("an oversize body without the token: %v, want unauthorized", err)
	}
}

// A value over MaxValueBytes, a key over MaxKeyBytes and a body over the limit are refused with
// 413, naming the limit; a value at the limit is stored, however much JSON escapes it.
func TestSizeLimits(t *testing.T) {
	const maxValue = 4096
	c := newTestCluster(t, Sync)
	n := c.startWith("node-1", Options{MaxValueBytes: maxValue})
	c.kit.WaitConverged(30 * time.Second)
	p, err := n.ck.GetPartition("k")
	if err != nil {
		t.Fatal(err)
	}
	replicate := func(value string) ReplicateRequest {
		return ReplicateRequest{Partition: p.ID, PrimaryEpoch: p.PrimaryEpoch, MapEpoch: p.Epoch, From: "test",
			Entries: []Entry{{Key: "k", Value: value, Version: Version{Epoch: p.PrimaryEpoch, Seq: uint64(len(value))}}}}
	}
	limit := bodyLimit(maxValue)
	tests := []struct {
		name string
		path string
		body any
		want string // "" for 200
	}{
		{"value at the limit", "/store/put", PutRequest{Key: "k", Value: strings.Repeat("x", maxValue)}, ""},
		// encoding/json sends each '<' as \u003c, and each control character as \u00XX: six
		// bytes of body for each byte of value.
		{"value at the limit, escaped", "/store/put", PutRequest{Key: strings.Repeat("<", MaxKeyBytes), Value: strings.Repeat("\x01", maxValue)}, ""},
		{"value one byte over", "/store/put", PutRequest{Key: "k", Value: strings.Repeat("x", maxValue+1)},
			fmt.Sprintf("value of %d bytes, over the limit of %d bytes", maxValue+1, maxValue)},
		{"key one byte over", "/store/put", PutRequest{Key: strings.Repeat("k", MaxKeyBytes+1), Value: "v"},
			fmt.Sprintf("key of %d bytes, over the limit of %d bytes", MaxKeyBytes+1, MaxKeyBytes)},
		{"body over", "/store/put", PutRequest{Key: "k", Value: strings.Repeat("x", int(limit))},
			fmt.Sprintf("request body over the limit of %d bytes", limit)},
		{"replicated value over", "/store/replicate", replicate(strings.Repeat("x", maxValue+1)),
			fmt.Sprintf("over the limit of %d bytes", maxValue)},
		{"replicated value at the limit", "/store/replicate", replicate(strings.Repeat("y", maxValue)), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Call(context.Background(), c.httpc, http.MethodPost, n.addr, tt.path, nil, tt.body, nil)
			if tt.want == "" {
				if err != nil {
					t.Errorf("answered %v, want 200", err)
				}
				return
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.Status != http.StatusRequestEntityTooLarge || apiErr.Code != "too_large" ||
				!strings.Contains(apiErr.Message, tt.want) {
				t.Errorf("answered %v, want 413 too_large mentioning %q", err, tt.want)
			}
		})
	}
	if _, err := n.st.Put(context.Background(), "k", strings.Repeat("x", maxValue+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Put of a value over the limit: %v, want ErrTooLarge", err)
	}
}

func TestInvalidOptions(t *testing.T) {
	c := newTestCluster(t, Sync)
	ck := c.kit.Start(c.kit.Options("node-1"))
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"negative value limit", Options{MaxValueBytes: -1}, "MaxValueBytes"},
		{"value limit over the largest", Options{MaxValueBytes: MaxMaxValueBytes + 1}, "MaxValueBytes"},
		{"short token", Options{Token: "short"}, "Token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(ck, tt.opts); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New: %v, want ErrInvalidOptions naming %s", err, tt.want)
			}
		})
	}
}

// However the entries are sized and spelled, coalesce cuts them into requests whose JSON fits
// the receiver's body limit, in order, without mixing partitions or primary epochs.
func TestCoalesceFitsTheBodyLimit(t *testing.T) {
	const maxValue = 300
	rng := rand.New(rand.NewPCG(1, 2))
	// '<' and a control character are what JSON spells in six bytes.
	alphabet := []string{"a", "<", "\x01", "é", "\""}
	randString := func(max int) string {
		var b strings.Builder
		for n := rng.IntN(max + 1); ; {
			s := alphabet[rng.IntN(len(alphabet))]
			if b.Len()+len(s) > n {
				return b.String()
			}
			b.WriteString(s)
		}
	}
	for round := range 30 {
		var batch []ReplicateRequest
		var want []Entry
		for i := range 1 + rng.IntN(20) {
			req := ReplicateRequest{Partition: fmt.Sprintf("partition-%d", rng.IntN(2)), PrimaryEpoch: uint64(1 + rng.IntN(2)), MapEpoch: 7, From: "node-1"}
			for j := range 1 + rng.IntN(20) {
				e := Entry{Key: fmt.Sprintf("k-%d-%d-%s", i, j, randString(20)), Value: randString(maxValue), Version: Version{Epoch: req.PrimaryEpoch, Seq: ^uint64(0)}}
				if rng.IntN(10) == 0 {
					e.Key = strings.Repeat("<", MaxKeyBytes)
					e.Value = strings.Repeat("\x01", maxValue)
				}
				req.Entries = append(req.Entries, e)
				want = append(want, e)
			}
			batch = append(batch, req)
		}
		out := coalesce(batch, batchBudget(maxValue))
		var got []Entry
		for _, r := range out {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if int64(len(b)) > bodyLimit(maxValue) {
				t.Fatalf("round %d: a request of %d entries takes %d bytes, over the body limit of %d", round, len(r.Entries), len(b), bodyLimit(maxValue))
			}
			if len(r.Entries) == 0 || len(r.Entries) > maxBatch {
				t.Fatalf("round %d: a request of %d entries", round, len(r.Entries))
			}
			for _, e := range r.Entries {
				if e.Version.Epoch != r.PrimaryEpoch {
					t.Fatalf("round %d: an entry of primary epoch %d in a request of %d", round, e.Version.Epoch, r.PrimaryEpoch)
				}
			}
			got = append(got, r.Entries...)
		}
		if len(got) != len(want) {
			t.Fatalf("round %d: %d entries out, %d in", round, len(got), len(want))
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("round %d: entry %d is %q, want %q", round, i, got[i].Key, want[i].Key)
			}
		}
	}
}

// In a cluster with a token, every node-to-node call carries it: Async replication in batches
// near the body limit, the hand-over of queued writes to a new primary (adopt), and the copies
// of a join (export, a partition larger than any request body): every holder ends up with
// every acknowledged write.
func TestTokenClusterReplicatesAndCopies(t *testing.T) {
	const maxValue = 1024
	c := newTokenCluster(t, Async)
	g := &gate{path: "/store/replicate", opened: make(chan struct{})}
	a := c.startWith("node-1", Options{Replication: Async, Token: testToken, MaxValueBytes: maxValue,
		HTTPClient: &http.Client{Transport: g, Timeout: 30 * time.Second}})
	for _, id := range []string{"node-2", "node-3"} {
		c.startWith(id, Options{Replication: Async, Token: testToken, MaxValueBytes: maxValue})
	}
	c.kit.WaitConverged(30 * time.Second)

	// 60 keys in each partition node-1 leads, one partition after the other, of values of
	// '<' (six bytes each in JSON): node-1's held queue to each replica coalesces into runs of
	// one partition many times one body limit, and each of those partitions' export is too.
	const perPartition = 60
	want := map[string]Entry{}
	var written []string
	count := map[string]int{}
	var keys []string
	for i := 0; len(keys) < a.st.Stats().Primaries*perPartition; i++ {
		key := fmt.Sprintf("key-%d", i)
		p, _ := a.ck.GetPartition(key)
		if a.ck.IsPrimary(p) && count[p.ID] < perPartition {
			if count[p.ID] == 0 {
				written = append(written, p.ID)
			}
			count[p.ID]++
			keys = append(keys, key)
		}
	}
	slices.SortStableFunc(keys, func(x, y string) int {
		px, _ := a.ck.GetPartition(x)
		py, _ := a.ck.GetPartition(y)
		return strings.Compare(px.ID, py.ID)
	})
	for _, key := range keys {
		e, err := a.st.Put(context.Background(), key, strings.Repeat("<", maxValue-len(key))+key)
		if err != nil {
			t.Fatal(err)
		}
		want[key] = e
	}
	joined := c.startWith("node-4", Options{Replication: Async, Token: testToken, MaxValueBytes: maxValue})
	c.kit.WaitConverged(30 * time.Second)
	close(g.opened)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range c.list() {
		if err := n.st.Flush(ctx); err != nil {
			t.Fatalf("%s: %v (its stats: %+v)", n.id, err, n.st.Stats())
		}
	}
	c.checkAll(want)
	copied := 0
	for _, id := range written {
		if slices.ContainsFunc(a.ck.GetNodes(&clusterkit.Partition{ID: id}), func(n clusterkit.Node) bool { return n.ID == "node-4" }) {
			copied++
		}
	}
	if st := joined.st.Stats(); copied == 0 || st.KeysCopiedIn < perPartition {
		t.Errorf("node-4 holds %d of the %d partitions written and copied %d keys in; want one at least, copied whole", copied, len(written), st.KeysCopiedIn)
	}
	if a.st.Stats().ReplicaSends == 0 {
		t.Errorf("node-1 replicated nothing: %+v", a.st.Stats())
	}
	t.Logf("node-1: %+v", a.st.Stats())
}

// The token goes where the caller sends it, and no further: a redirect is not followed.
func TestTokenClientFollowsNoRedirect(t *testing.T) {
	seen := make(chan string, 2)
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization")
	}))
	defer other.Close()
	first := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen <- r.Header.Get("Authorization")
		http.Redirect(w, r, other.URL, http.StatusFound)
	}))
	defer first.Close()
	httpc := TokenClient(&http.Client{Transport: &http.Transport{}}, testToken)
	defer httpc.CloseIdleConnections()
	resp, err := httpc.Get(first.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Errorf("answered %s, want the 302 itself", resp.Status)
	}
	if got := <-seen; got != "Bearer "+testToken {
		t.Errorf("the server asked got Authorization %q", got)
	}
	select {
	case got := <-seen:
		t.Errorf("the redirect was followed, with Authorization %q", got)
	default:
	}
}

func TestResolveToken(t *testing.T) {
	tests := []struct {
		name, flag, env, want string
		wantErr               string
	}{
		{"none", "", "", "", ""},
		{"environment", "", "env-token-0123456789", "env-token-0123456789", ""},
		{"flag wins", "flag-token-0123456789", "env-token-0123456789", "flag-token-0123456789", ""},
		{"short flag", "short", "env-token-0123456789", "", "-token: join token has 5 characters"},
		{"environment with a space", "", "env token 0123456789", "", "$JOIN_TOKEN: join token has ' '"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(TokenEnv, tt.env)
			got, err := ResolveToken(tt.flag)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ResolveToken(%q) with %s=%q: %q, %v; want an error mentioning %q", tt.flag, TokenEnv, tt.env, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ResolveToken(%q) with %s=%q: %q, %v; want %q", tt.flag, TokenEnv, tt.env, got, err, tt.want)
			}
		})
	}
}
