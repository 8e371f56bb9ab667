// Command kubectl-scim is the kubectl plugin of scim-operator: `kubectl scim inventory|why|review|revoke|jwks|plan|import`.
// Install it by copying the binary onto PATH (make install-plugin).
package main

import (
	"os"

	"github.com/nhi-dev/scim-operator/internal/plugin"
)

func main() {
	cmd := plugin.NewCommand(plugin.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}
