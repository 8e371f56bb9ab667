//go:build e2e

// Package quickstart runs the operator as users do, as Pods on a real node of a cluster of its
// own (test/node): the README's quick start verbatim, then the metrics Service, leader failover
// between Pods and `kubectl apply -k config/default` (see quickstart_test.go). It is a package
// of its own so that `make test-e2e` runs it beside the end-to-end suite, which shares one
// control plane among its specs.
package quickstart

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

var (
	root    string
	workDir string
)

func TestQuickstart(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "Quick start Suite")
}

var _ = BeforeSuite(func() {
	SetDefaultEventuallyTimeout(60 * time.Second)
	Expect(os.Getenv("KUBEBUILDER_ASSETS")).NotTo(BeEmpty(), "KUBEBUILDER_ASSETS is not set: run `make test-e2e`")
	var err error
	root, err = filepath.Abs(filepath.Join("..", ".."))
	Expect(err).NotTo(HaveOccurred())
	// Short: containerd's sockets live under it (a Unix socket's path has at most 107 bytes).
	workDir, err = os.MkdirTemp("", "scim-qs-")
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(os.RemoveAll, workDir)
})
