package clusterkit

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// A GET /cluster/join answer, as a node started with JoinAddr reads it (getJoinInfo, over HTTP
// from a server that answers the fuzzed body): refused with an error or read with a cluster name
// and etcd endpoints, never a panic, and what is read, served again, reads the same. go test runs
// the seeds; internal/fuzztest fuzzes it for a few seconds; run it longer with
//
//	go test ./pkg/clusterkit -run '^$' -fuzz '^FuzzJoinInfo$' -fuzztime 5m
func FuzzJoinInfo(f *testing.F) {
	var body atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(*body.Load())
	}))
	f.Cleanup(func() {
		srv.Close()
		http.DefaultClient.CloseIdleConnections()
	})
	get := func(b []byte) (*wire.JoinInfo, error) {
		body.Store(&b)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return getJoinInfo(ctx, http.DefaultClient, srv.URL+"/cluster/join", "")
	}

	served := httptest.NewRecorder()
	writeJSON(served, http.StatusOK, wire.JoinInfo{ClusterName: "default", ClusterID: "3f2a9c1e", PartitionCount: 64, ReplicationFactor: 3,
		EtcdEndpoints: []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"}})
	f.Add(served.Body.Bytes())
	for _, s := range []string{
		`{"cluster_name":"default","etcd_endpoints":[]}`,
		`{"cluster_name":"","etcd_endpoints":["http://127.0.0.1:2379"]}`,
		`{"cluster_name":"a","etcd_endpoints":["http://127.0.0.1:2379"],"partition_count":-1}`,
		`{"cluster_name":"a","etcd_endpoints":null}`,
		`{"error":"node is not started"}`,
		`[`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		info, err := get(b)
		if err != nil {
			return
		}
		if len(info.EtcdEndpoints) == 0 || info.ClusterName == "" {
			t.Fatalf("an answer without etcd endpoints or cluster name accepted: %+v", info)
		}
		out, err := json.Marshal(info)
		if err != nil {
			t.Fatalf("a join answer read does not encode: %v", err)
		}
		again, err := get(out)
		if err != nil || !reflect.DeepEqual(again, info) {
			t.Fatalf("a join answer changes when served again (%v): %+v, then %+v", err, info, again)
		}
	})
}
