// Command etcdserver is the etcd server of the module's etcd version, built from go.mod so that
// the end-to-end tests can run etcd as a separate process on a machine without an etcd binary.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
