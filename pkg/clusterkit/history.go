package clusterkit

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Bounds of GET /cluster/history's limit.
const (
	defaultHistoryLimit = 100
	maxHistoryLimit     = 1000
)

// handleHistory serves GET /cluster/history?since=<epoch>&limit=<n>: the records of the maps
// published after epoch since (0: the oldest kept), oldest first, at most limit of them. They
// are read from etcd, where the leader writes each with its map.
func (ck *ClusterKit) handleHistory(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var since uint64
	if v := q.Get("since"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "since must be a map epoch (a non-negative integer), got "+strconv.Quote(v))
			return
		}
		since = n
	}
	limit := defaultHistoryLimit
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxHistoryLimit {
			writeError(w, http.StatusBadRequest, "limit must be an integer from 1 to "+strconv.Itoa(maxHistoryLimit)+", got "+strconv.Quote(v))
			return
		}
		limit = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	s := ck.env.schema
	end := clientv3.GetPrefixRangeEnd(s.HistoryPrefix())
	resp, err := ck.env.client.Txn(ctx).Then(
		clientv3.OpGet(s.History(since+1), clientv3.WithRange(end), clientv3.WithLimit(int64(limit))),
		clientv3.OpGet(s.HistoryPrefix(), clientv3.WithRange(end), clientv3.WithLimit(1), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, "read the history from etcd: "+err.Error())
		return
	}
	out := wire.History{Records: []wire.HistoryRecord{}}
	if oldest := resp.Responses[1].GetResponseRange().Kvs; len(oldest) > 0 {
		out.Oldest, _ = strconv.ParseUint(strings.TrimPrefix(string(oldest[0].Key), s.HistoryPrefix()), 10, 64)
	}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		var rec wire.HistoryRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			ck.env.log.Warn("skipping unreadable history record", zap.ByteString("key", kv.Key), zap.Error(err))
			continue
		}
		out.Records = append(out.Records, rec)
	}
	writeJSON(w, http.StatusOK, out)
}
