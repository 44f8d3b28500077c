package joininfo

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// A GET /cluster/join answer, as a node started with JoinAddr reads it: refused with an error or
// read with a cluster name and etcd endpoints, never a panic, and what is read, served again,
// reads the same. go test runs the seeds; internal/fuzztest fuzzes it for a short while; run it
// longer with
//
//	go test ./internal/joininfo -run '^$' -fuzz '^FuzzJoinInfo$' -fuzztime 5m
func FuzzJoinInfo(f *testing.F) {
	// What a node serves: the JSON of wire.JoinInfo and a newline.
	served, err := json.Marshal(wire.JoinInfo{ClusterName: "default", ClusterID: "3f2a9c1e", PartitionCount: 64, ReplicationFactor: 3,
		EtcdEndpoints: []string{"http://10.0.0.1:2379", "http://10.0.0.2:2379", "http://10.0.0.3:2379"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(append(served, '\n'))
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
		info, err := Decode(b)
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
		again, err := Decode(out)
		if err != nil || !reflect.DeepEqual(again, info) {
			t.Fatalf("a join answer changes when served again (%v): %+v, then %+v", err, info, again)
		}
	})
}
