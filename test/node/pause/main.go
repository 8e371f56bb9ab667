// Command pause is the Pod sandbox's process (and the quick start's workload) on test/node's
// kubelet, where nothing can be pulled: it waits for SIGTERM or SIGINT, as Kubernetes' pause does.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
