// Package joininfo reads the answer of GET /cluster/join: what a node started with JoinAddr
// needs to reach its cluster's etcd. A node asks it of the node at JoinAddr, over plain HTTP or
// in the answer to its join request in secure mode, and refuses an answer that names no etcd
// endpoint or no cluster.
//
// It is pkg/clusterkit's; it is a package of its own so that its decoder is fuzzed without
// linking the etcd client.
package joininfo

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/clusterkit-go/clusterkit/pkg/wire"
)

// Decode decodes a GET /cluster/join answer and checks it (see Check).
func Decode(body []byte) (*wire.JoinInfo, error) {
	var info wire.JoinInfo
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, fmt.Errorf("not a ClusterKit node: %v", err)
	}
	if err := Check(&info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Check reports why a node cannot join with info: it names no etcd endpoint or no cluster.
func Check(info *wire.JoinInfo) error {
	if len(info.EtcdEndpoints) == 0 || info.ClusterName == "" {
		return errors.New("answer lacks etcd endpoints or cluster name")
	}
	return nil
}
