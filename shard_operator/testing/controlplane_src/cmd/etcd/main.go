// Command etcd is the upstream etcd server, built at the version that the
// pinned kube-apiserver's client requires.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
