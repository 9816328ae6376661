// Command pause is the dev node's pod sandbox: it holds the pod's namespaces, reaps orphaned
// children (it is PID 1 when the pod shares its process namespace) and exits on SIGINT or
// SIGTERM. Built statically by devtools/src/moonlander_dev/node.py and imported into the node's
// containerd under the sandbox image name, so that no registry is needed.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
